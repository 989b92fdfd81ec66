//! The rule for text that enters through the media plane (RTP session
//! fields from the media API, transcripts from the bot): no control
//! characters but tab, line feed and carriage return. A NUL in a caller id
//! once made PostgreSQL refuse every later call event; text is checked
//! where it enters so nothing downstream has to cope.

/// Whether `c` is a control character the rule refuses (C0 but `\t`, `\n`,
/// `\r`; DEL; C1).
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// `Err` naming the first forbidden character of `s`.
pub fn check(what: &str, s: &str) -> Result<(), String> {
    match s.chars().find(|c| is_forbidden_control(*c)) {
        Some(c) => Err(format!(
            "{what} contains the control character U+{:04X}",
            c as u32
        )),
        None => Ok(()),
    }
}

/// `s` without its forbidden characters, and whether any were removed.
pub fn clean(s: String) -> (String, bool) {
    if !s.chars().any(is_forbidden_control) {
        return (s, false);
    }
    (s.chars().filter(|c| !is_forbidden_control(*c)).collect(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn nul_and_escapes_are_refused_tabs_and_newlines_are_not() {
        assert!(check("caller", "+1555\u{0}0100").is_err());
        assert!(check("caller", "\u{1b}[31m").is_err());
        assert!(check("caller", "\u{85}").is_err());
        assert!(check("text", "line one\nline\ttwo\r\n").is_ok());
        assert_eq!(clean("a\u{0}b".into()), ("ab".into(), true));
    }

    proptest! {
        #[test]
        fn cleaned_text_always_passes(s in ".*") {
            let (c, _) = clean(s);
            prop_assert!(check("x", &c).is_ok());
        }
    }
}
