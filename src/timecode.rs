//! Time codes: every format verbatim writes or reads, in one place.

/// `HH:MM:SS<sep>mmm`: SRT (`,`), WebVTT and the CLI's segment times (`.`).
pub fn clock(seconds: f64, separator: char) -> String {
    let total_ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, rem) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rem) = (rem / 60_000, rem % 60_000);
    let (s, ms) = (rem / 1000, rem % 1000);
    format!("{h:02}:{m:02}:{s:02}{separator}{ms:03}")
}

/// `H:MM:SS.cc` (centiseconds), as ASS wants it.
pub fn ass(seconds: f64) -> String {
    let cs = (seconds.max(0.0) * 100.0).round() as u64;
    format!(
        "{}:{:02}:{:02}.{:02}",
        cs / 360_000,
        (cs / 6000) % 60,
        (cs / 100) % 60,
        cs % 100
    )
}

/// `MM:SS.cc`, as LRC wants it (minutes run past 59).
pub fn lrc(seconds: f64) -> String {
    let cs = (seconds.max(0.0) * 100.0).round() as u64;
    format!("{:02}:{:02}.{:02}", cs / 6000, (cs / 100) % 60, cs % 100)
}

/// A subtitle cue time: `HH:MM:SS,mmm`, `HH:MM:SS.mmm` or (WebVTT) `MM:SS.mmm`, in seconds.
pub fn parse_cue(s: &str, vtt: bool) -> Option<f64> {
    let (clock, frac) = s.rsplit_once([',', '.'])?;
    if frac.is_empty() || frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m, s] => (*h, *m, *s),
        [m, s] if vtt => ("0", *m, *s),
        _ => return None,
    };
    let num = |x: &str| -> Option<u64> {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse().ok())?
    };
    let (h, m, sec) = (num(h)?, num(m)?, num(sec)?);
    if m >= 60 || sec >= 60 {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}").parse().ok()?;
    Some((h * 3600 + m * 60 + sec) as f64 + ms as f64 / 1000.0)
}

/// A time a user types: `90`, `1:30`, `01:02:03.5`, in seconds.
pub fn parse_user(s: &str) -> Result<f64, String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(format!(
            "invalid time `{s}` (use seconds, MM:SS or HH:MM:SS)"
        ));
    }
    let mut total = 0.0;
    for (i, part) in parts.iter().enumerate() {
        let v: f64 = part
            .parse()
            .map_err(|_| format!("invalid time `{s}` (use seconds, MM:SS or HH:MM:SS)"))?;
        if !v.is_finite() || v < 0.0 {
            return Err(format!("invalid time `{s}`"));
        }
        // In MM:SS and HH:MM:SS every field after the first counts below 60.
        if i > 0 && v >= 60.0 {
            return Err(format!(
                "invalid time `{s}`: minutes and seconds after a colon must be below 60"
            ));
        }
        total = total * 60.0 + v;
    }
    Ok(total)
}

/// A length of time as [`parse_user`] reads it, which must be more than zero (`--duration`).
pub fn parse_length(s: &str) -> Result<f64, String> {
    match parse_user(s)? {
        v if v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is no time at all: give a length above zero")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_times() {
        assert_eq!(parse_user("1:30").unwrap(), 90.0);
        assert_eq!(parse_user("01:02:03.5").unwrap(), 3723.5);
        assert_eq!(parse_user("90").unwrap(), 90.0);
        assert!(parse_user("99:99:99").is_err());
        assert!(parse_user("1:60").is_err());
        assert!(parse_user("-1").is_err());
        assert!(parse_length("0").is_err());
        assert!(parse_length("00:00").is_err());
        assert_eq!(parse_length("0.5").unwrap(), 0.5);
    }

    #[test]
    fn formats() {
        assert_eq!(clock(3723.4567, ','), "01:02:03,457");
        assert_eq!(clock(-1.0, '.'), "00:00:00.000");
        assert_eq!(ass(0.0), "0:00:00.00");
        assert_eq!(ass(3723.456), "1:02:03.46");
        assert_eq!(lrc(3723.456), "62:03.46");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_cue("01:02:03,450", false), Some(3723.45));
        assert_eq!(parse_cue("02:03.5", true), Some(123.5));
        assert_eq!(parse_cue("02:03.5", false), None);
        assert_eq!(parse_cue("00:61:00,000", false), None);
        assert_eq!(parse_user("1:30"), Ok(90.0));
        assert_eq!(parse_user("01:02:03.5"), Ok(3723.5));
        assert!(parse_user("1::2").is_err());
        assert!(parse_user("-3").is_err());
    }

    #[test]
    fn round_trips() {
        for t in [0.0, 0.001, 59.999, 3599.5, 36000.25] {
            assert_eq!(parse_cue(&clock(t, ','), false), Some(t));
        }
    }
}
