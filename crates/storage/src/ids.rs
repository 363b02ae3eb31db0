//! Object ids and transaction ids: 8 big-endian bytes each, as ZODB has them.
//!
//! A [`Tid`] is also a ZODB `TimeStamp`: the first four bytes count minutes since
//! 1900-01-01 in a calendar of 31-day months, the last four are the seconds within
//! that minute scaled by 2^32/60. The arithmetic here follows persistent's C
//! implementation (`_timestamp.c`), which is what every ZODB process actually runs.

use std::fmt;

/// Seconds per unit of the low 32 bits of a timestamp: 60 / 2^32.
const SECOND_BYTES_BIAS: f64 = 60.0 / 65536.0 / 65536.0;
const BASE_YEAR: i64 = 1900;
const MINUTES_PER_DAY: u32 = 1440;
const DAYS_PER_MONTH: u32 = 31;
const MINUTES_PER_MONTH: u32 = DAYS_PER_MONTH * MINUTES_PER_DAY;
const MINUTES_PER_YEAR: u32 = MINUTES_PER_MONTH * 12;

/// The id of a persistent object: 8 bytes, compared as a big-endian integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Oid(pub [u8; 8]);

/// A transaction id, which is also a ZODB `TimeStamp`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tid(pub [u8; 8]);

macro_rules! eight_byte_id {
    ($ty:ident) => {
        impl $ty {
            /// All zero bytes (ZODB's `z64`).
            pub const ZERO: $ty = $ty([0; 8]);

            pub const fn from_u64(value: u64) -> Self {
                $ty(value.to_be_bytes())
            }

            pub const fn as_u64(self) -> u64 {
                u64::from_be_bytes(self.0)
            }

            pub const fn as_bytes(&self) -> &[u8; 8] {
                &self.0
            }

            /// Reads an id from exactly 8 bytes; anything else is `None`.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; 8]>::try_from(bytes).ok().map($ty)
            }

            pub fn is_zero(self) -> bool {
                self == Self::ZERO
            }
        }

        // The byte order of a big-endian integer, compared as one integer: the
        // same order as the bytes', without a `memcmp` per comparison (index
        // lookups compare ids all the time).
        impl Ord for $ty {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.as_u64().cmp(&other.as_u64())
            }
        }

        impl PartialOrd for $ty {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        impl From<[u8; 8]> for $ty {
            fn from(bytes: [u8; 8]) -> Self {
                $ty(bytes)
            }
        }

        impl AsRef<[u8]> for $ty {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::LowerHex for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:016x}", self.as_u64())
            }
        }
    };
}

eight_byte_id!(Oid);
eight_byte_id!(Tid);

impl Oid {
    /// The next oid, or `None` past the last one.
    pub fn next(self) -> Option<Oid> {
        self.as_u64().checked_add(1).map(Oid::from_u64)
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Oid(0x{:02x})", self.as_u64())
    }
}

/// Displays like ZODB's `oid_repr`: `0x` and the shortest even number of hex digits.
impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = format!("{:x}", self.as_u64());
        if hex.len() % 2 == 1 {
            write!(f, "0x0{hex}")
        } else {
            write!(f, "0x{hex}")
        }
    }
}

/// The calendar parts of a timestamp, as `TimeStamp.year()` … `second()` give them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimeStampParts {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: f64,
}

impl Tid {
    /// ZODB's `maxtid`: loads "before" it see the current revision.
    pub const MAX: Tid = Tid([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

    /// `TimeStamp(year, month, day, hour, minute, second)`, or `None` when a field is
    /// out of the range the C implementation accepts.
    pub fn from_parts(parts: TimeStampParts) -> Option<Tid> {
        let TimeStampParts {
            year,
            month,
            day,
            hour,
            minute,
            second,
        } = parts;
        if year < BASE_YEAR || !(1..=12).contains(&month) || hour > 23 || minute > 59 {
            return None;
        }
        if day < 1 || day > days_in_month(year, month) {
            return None;
        }
        let years = u32::try_from(year - BASE_YEAR).ok()?;
        let months = years.wrapping_mul(12).wrapping_add(month - 1);
        let days = months.wrapping_mul(DAYS_PER_MONTH).wrapping_add(day - 1);
        let minutes = days
            .wrapping_mul(24)
            .wrapping_add(hour)
            .wrapping_mul(60)
            .wrapping_add(minute);
        // C casts the scaled double to unsigned int; `as` saturates instead of being
        // undefined, which only differs for seconds outside [0, 60).
        let low = (second / SECOND_BYTES_BIAS) as u32;
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&minutes.to_be_bytes());
        raw[4..].copy_from_slice(&low.to_be_bytes());
        Some(Tid(raw))
    }

    /// The timestamp of a wall-clock time in seconds since the Unix epoch (UTC),
    /// as ZODB's `newTid` builds it: `TimeStamp(*gmtime(t)[:5] + (t % 60,))`.
    pub fn from_unix_time(t: f64) -> Tid {
        let whole = t.floor();
        let secs = whole as i64;
        let days = secs.div_euclid(86_400);
        let in_day = secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let hour = (in_day / 3600) as u32;
        let minute = ((in_day % 3600) / 60) as u32;
        let second = t.rem_euclid(60.0);
        Tid::from_parts(TimeStampParts {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
        .unwrap_or(Tid::ZERO)
    }

    /// A new tid for a transaction starting now, later than `previous` (`newTid`).
    pub fn now_later_than(previous: Tid) -> Tid {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Tid::from_unix_time(now).later_than(previous)
    }

    pub fn parts(self) -> TimeStampParts {
        let minutes = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        let low = u32::from_be_bytes([self.0[4], self.0[5], self.0[6], self.0[7]]);
        let minute_of_day = minutes % MINUTES_PER_DAY;
        TimeStampParts {
            year: i64::from(minutes / MINUTES_PER_YEAR) + BASE_YEAR,
            month: (minutes % MINUTES_PER_YEAR) / MINUTES_PER_MONTH + 1,
            day: (minutes % MINUTES_PER_MONTH) / MINUTES_PER_DAY + 1,
            hour: minute_of_day / 60,
            minute: minute_of_day % 60,
            second: SECOND_BYTES_BIAS * f64::from(low),
        }
    }

    /// Seconds since the Unix epoch, as `TimeStamp.timeTime()` computes it.
    pub fn unix_time(self) -> f64 {
        // The C code counts days from 1901-01-01 (its `_abst`) and subtracts the
        // epoch's offset last; the same order of float operations gives the same bits.
        const DAYS_1901_TO_1970: i64 = 25_202;
        let p = self.parts();
        let minute_of_day = p.hour * 60 + p.minute;
        let days_since_1901 =
            days_from_civil(p.year, p.month, 1) + i64::from(p.day) - 1 + DAYS_1901_TO_1970;
        let abst = (days_since_1901 as f64) * 86400.0 + f64::from(minute_of_day) * 60.0;
        abst + p.second - (DAYS_1901_TO_1970 as f64) * 86400.0
    }

    /// `TimeStamp.laterThan(other)`: `self` if it is already later, else the
    /// smallest timestamp after `other`.
    pub fn later_than(self, other: Tid) -> Tid {
        if self > other {
            return self;
        }
        let mut raw = other.0;
        for i in (4..8).rev() {
            if raw[i] == 255 {
                raw[i] = 0;
            } else {
                raw[i] += 1;
                return Tid(raw);
            }
        }
        // The seconds overflowed: move to the next minute, with zero seconds.
        let mut p = other.parts();
        let mut minute_of_day = p.hour * 60 + p.minute;
        if minute_of_day >= 1439 {
            minute_of_day = 0;
            if p.day >= days_in_month(p.year, p.month) {
                p.day = 1;
                if p.month == 12 {
                    p.month = 1;
                    p.year += 1;
                } else {
                    p.month += 1;
                }
            } else {
                p.day += 1;
            }
        } else {
            minute_of_day += 1;
        }
        Tid::from_parts(TimeStampParts {
            hour: minute_of_day / 60,
            minute: minute_of_day % 60,
            second: 0.0,
            ..p
        })
        .unwrap_or(Tid::MAX)
    }
}

impl fmt::Debug for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tid(0x{:016x} {})", self.as_u64(), self)
    }
}

/// Displays like `str(TimeStamp)`: `2026-11-23 18:49:07.157609`.
impl fmt::Display for Tid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.parts();
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:09.6}",
            p.year, p.month, p.day, p.hour, p.minute, p.second
        )
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_like_their_bytes() {
        let values = [
            0u64,
            1,
            0xff,
            0x100,
            0x0100_0000_0000_0000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for &a in &values {
            for &b in &values {
                let (x, y) = (Oid::from_u64(a), Oid::from_u64(b));
                assert_eq!(x.cmp(&y), x.0.cmp(&y.0));
                let (x, y) = (Tid::from_u64(a), Tid::from_u64(b));
                assert_eq!(x.partial_cmp(&y), Some(x.0.cmp(&y.0)));
            }
        }
    }

    #[test]
    fn display_matches_python() {
        // str(TimeStamp(bytes.fromhex('040d36e91e8a0466'))) from the conflict trace.
        let tid = Tid::from_u64(0x040d36e91e8a0466);
        assert_eq!(tid.to_string(), "2026-11-23 18:49:07.157609");
    }

    #[test]
    fn oid_display_matches_oid_repr() {
        assert_eq!(Oid::from_u64(1).to_string(), "0x01");
        assert_eq!(Oid::from_u64(0x123).to_string(), "0x0123");
        assert_eq!(Oid::ZERO.to_string(), "0x00");
    }

    #[test]
    fn later_than_increments_low_bytes_and_rolls_minutes() {
        let a = Tid::from_u64(0x0000_0001_0000_00ff);
        assert_eq!(
            Tid::ZERO.later_than(a),
            Tid::from_u64(0x0000_0001_0000_0100)
        );
        let b = Tid::from_u64(0x0000_0001_ffff_ffff);
        assert_eq!(
            Tid::ZERO.later_than(b),
            Tid::from_u64(0x0000_0002_0000_0000)
        );
        assert_eq!(b.later_than(a), b);
    }

    #[test]
    fn unix_time_round_trips_through_from_unix_time() {
        for t in [
            0.0,
            1_795_459_110.991_229_5,
            951_782_400.5,
            4_102_444_799.999,
        ] {
            let tid = Tid::from_unix_time(t);
            assert!(
                (tid.unix_time() - t).abs() < 1e-6,
                "{t} -> {}",
                tid.unix_time()
            );
        }
    }

    #[test]
    fn civil_days_round_trip() {
        for days in [-719_468_i64, -1, 0, 1, 11_016, 20_000, 50_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
