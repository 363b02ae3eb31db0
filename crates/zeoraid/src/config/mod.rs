//! Configuration in the ZEO world's own ZConfig syntax (`zeo.conf`).
