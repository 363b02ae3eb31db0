//! The storage model: what every storage in zeoraid speaks.
