//! Time-of-day windows, sans-IO: is a target's local time inside the
//! campaign's window, and if not, when does the window next open (in UTC
//! milliseconds)? Zones are IANA names resolved with jiff's bundled time
//! zone database, so results do not depend on the host's zoneinfo files.

use super::Window;

/// A window as minutes of the day, `[start, end)`; `start > end` spans midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Minutes {
    /// Opens.
    pub start: u16,
    /// Closes.
    pub end: u16,
}

fn hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Parses `HH:MM` bounds (equal bounds: always open).
pub fn parse(w: &Window) -> Result<Minutes, String> {
    let start = hhmm(&w.start).ok_or("window.start must be HH:MM")?;
    let end = hhmm(&w.end).ok_or("window.end must be HH:MM")?;
    Ok(Minutes { start, end })
}

/// Checks an IANA zone name.
pub fn check_zone(name: &str) -> Result<(), String> {
    zone(name).map(|_| ())
}

fn zone(name: &str) -> Result<jiff::tz::TimeZone, String> {
    if name.len() > 64 {
        return Err("timezone longer than 64 bytes".into());
    }
    jiff::tz::TimeZone::get(name).map_err(|_| format!("unknown timezone {name:?}"))
}

impl Minutes {
    fn contains(self, minute: u16) -> bool {
        if self.start == self.end {
            true
        } else if self.start < self.end {
            (self.start..self.end).contains(&minute)
        } else {
            minute >= self.start || minute < self.end
        }
    }
}

/// `None` when `now_ms` is inside the window in zone `tz`; otherwise when it
/// opens next. An unknown zone is an error (targets are checked on entry).
pub fn next_open(w: Minutes, tz: &str, now_ms: i64) -> Result<Option<i64>, String> {
    let tz = zone(tz)?;
    let now = jiff::Timestamp::from_millisecond(now_ms)
        .map_err(|e| e.to_string())?
        .to_zoned(tz.clone());
    let minute = (now.hour() as u16) * 60 + now.minute() as u16;
    if w.contains(minute) {
        return Ok(None);
    }
    let (h, m) = ((w.start / 60) as i8, (w.start % 60) as i8);
    let mut day = now.date();
    for _ in 0..3 {
        let open = day
            .at(h, m, 0, 0)
            .to_zoned(tz.clone())
            .map_err(|e| e.to_string())?;
        if open.timestamp() > now.timestamp() {
            return Ok(Some(open.timestamp().as_millisecond()));
        }
        day = day.tomorrow().map_err(|e| e.to_string())?;
    }
    Err("no window opening within two days".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: &str, end: &str) -> Minutes {
        parse(&Window {
            start: start.into(),
            end: end.into(),
        })
        .expect("valid")
    }

    fn ms(rfc3339: &str) -> i64 {
        rfc3339.parse::<jiff::Timestamp>().expect("time").as_millisecond()
    }

    #[test]
    fn inside_is_open_outside_waits_for_the_local_opening() {
        let day = w("09:00", "20:00");
        // 08:30 UTC is 09:30 in Berlin (winter): open.
        assert_eq!(
            next_open(day, "Europe/Berlin", ms("2026-11-24T08:30:00Z")),
            Ok(None)
        );
        // 08:30 UTC is 03:30 in New York: opens at 09:00 local = 14:00 UTC.
        assert_eq!(
            next_open(day, "America/New_York", ms("2026-11-24T08:30:00Z")),
            Ok(Some(ms("2026-11-24T14:00:00Z")))
        );
        // After closing: tomorrow's opening.
        assert_eq!(
            next_open(day, "UTC", ms("2026-11-24T20:00:00Z")),
            Ok(Some(ms("2026-11-25T09:00:00Z")))
        );
    }

    #[test]
    fn equal_bounds_are_always_open() {
        assert_eq!(
            next_open(w("10:00", "10:00"), "UTC", ms("2026-11-24T03:00:00Z")),
            Ok(None)
        );
    }

    #[test]
    fn windows_may_span_midnight() {
        let night = w("22:00", "02:00");
        assert_eq!(next_open(night, "UTC", ms("2026-11-24T23:30:00Z")), Ok(None));
        assert_eq!(next_open(night, "UTC", ms("2026-11-24T01:59:00Z")), Ok(None));
        assert_eq!(
            next_open(night, "UTC", ms("2026-11-24T02:00:00Z")),
            Ok(Some(ms("2026-11-24T22:00:00Z")))
        );
    }

    #[test]
    fn bad_bounds_and_zones_are_refused() {
        for (s, e) in [
            ("9:00", "20:00"),
            ("24:00", "01:00"),
            ("09:60", "10:00"),
            ("10:00", "1000"),
        ] {
            assert!(
                parse(&Window {
                    start: s.into(),
                    end: e.into()
                })
                .is_err(),
                "{s}-{e}"
            );
        }
        assert!(check_zone("Mars/Olympus").is_err());
        assert!(check_zone("Asia/Tokyo").is_ok());
    }
}
