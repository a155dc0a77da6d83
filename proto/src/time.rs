//! Points in the journal named by users: `--until`, `--before`, `--from`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point named on the command line: a sequence number or a wall-clock time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Point {
    Seq(u64),
    /// Nanoseconds since the Unix epoch.
    TimeNs(u64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("cannot read {input:?} as a point: expected RFC 3339 (2026-11-25T16:44:08Z), unix seconds (1795000000 or 1795000000.25), or seq:N")]
pub struct PointError {
    pub input: String,
}

impl std::str::FromStr for Point {
    type Err = PointError;

    fn from_str(s: &str) -> Result<Point, PointError> {
        let err = || PointError {
            input: s.to_string(),
        };
        let s = s.trim();
        if let Some(n) = s.strip_prefix("seq:") {
            return n.parse::<u64>().map(Point::Seq).map_err(|_| err());
        }
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
            let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
            if frac.len() > 9 || frac.contains('.') || secs.is_empty() {
                return Err(err());
            }
            let secs: u64 = secs.parse().map_err(|_| err())?;
            let frac_ns: u64 = if frac.is_empty() {
                0
            } else {
                format!("{frac:0<9}").parse().map_err(|_| err())?
            };
            return secs
                .checked_mul(1_000_000_000)
                .and_then(|n| n.checked_add(frac_ns))
                .map(Point::TimeNs)
                .ok_or_else(err);
        }
        let t = humantime::parse_rfc3339_weak(s).map_err(|_| err())?;
        let d = t.duration_since(UNIX_EPOCH).map_err(|_| err())?;
        u64::try_from(d.as_nanos())
            .map(Point::TimeNs)
            .map_err(|_| err())
    }
}

impl std::fmt::Display for Point {
    /// As the command line takes it: `seq:N`, or RFC 3339 with nanoseconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Point::Seq(s) => write!(f, "seq:{s}"),
            Point::TimeNs(t) => f.write_str(&fmt_time_ns(*t)),
        }
    }
}

/// Formats ns since the epoch as RFC 3339 with nanoseconds, in UTC.
pub fn fmt_time_ns(ns: u64) -> String {
    humantime::format_rfc3339_nanos(UNIX_EPOCH + Duration::from_nanos(ns)).to_string()
}

/// Now, in ns since the epoch (0 if the clock is before 1970).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Parses a duration such as `7d`, `36h`, `90min`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("cannot read {s:?} as a duration (e.g. 7d, 12h): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_point_form() {
        assert_eq!("seq:42".parse(), Ok(Point::Seq(42)));
        assert_eq!(
            "1700000000".parse(),
            Ok(Point::TimeNs(1_700_000_000_000_000_000))
        );
        assert_eq!(
            "1700000000.25".parse(),
            Ok(Point::TimeNs(1_700_000_000_250_000_000))
        );
        assert_eq!(
            "1970-01-01T00:00:01Z".parse(),
            Ok(Point::TimeNs(1_000_000_000))
        );
        assert_eq!(
            "1970-01-01T00:00:01.5Z".parse(),
            Ok(Point::TimeNs(1_500_000_000))
        );
        for bad in [
            "",
            "seq:",
            "seq:-1",
            "yesterday",
            "1.2.3",
            ".5",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Point>().is_err(), "{bad}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(fmt_time_ns(1_500_000_000), "1970-01-01T00:00:01.500000000Z");
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
    }
}
