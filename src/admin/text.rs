//! Free text an operator reads in a terminal (key names): which characters
//! it may not hold, and how they are shown if it holds them anyway.
//!
//! A terminal does not show text as it is. A control character (Unicode
//! category Cc: C0, DEL, C1) can move the cursor, clear the screen or end
//! the line; a bidirectional control (U+202E RIGHT-TO-LEFT OVERRIDE and its
//! kin, the whole Bidi_Control set) reorders what follows it, so that
//! `invoice<U+202E>fdp.exe` reads as `invoiceexe.pdf`; U+2028 and U+2029
//! break the line. Any of them lets a name make `keygate keys list` show
//! something other than what is stored. The admin API refuses names with
//! them, and the CLI escapes any it prints, for names stored before that
//! rule (one list, here, for both).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` changes how the text around it is displayed instead of
/// being shown: a control character (Cc), a bidirectional control, or a
/// line or paragraph separator.
pub(crate) fn is_display_control(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

/// `text` with every display control written as Rust writes it escaped
/// (`\u{202e}`), so that it is seen rather than obeyed; borrowed when there
/// is none.
pub(crate) fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_display_control) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_display_control(c) {
            // Writing to a String cannot fail.
            let _ = write!(escaped, "{}", c.escape_unicode());
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_bidi_and_separators_are_display_controls() {
        for c in [
            '\0', '\n', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}', '\u{061c}', '\u{200e}', '\u{200f}',
            '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            assert!(is_display_control(c), "U+{:04X}", c as u32);
        }
        for c in ['a', ' ', 'é', 'ж', '’', '\u{200d}', '🔑'] {
            assert!(!is_display_control(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn escape_shows_what_would_be_obeyed() {
        assert!(matches!(escape("plain name"), Cow::Borrowed("plain name")));
        assert_eq!(
            escape("a\u{202e}b\u{1b}[2J\u{2028}"),
            "a\\u{202e}b\\u{1b}[2J\\u{2028}"
        );
    }
}
