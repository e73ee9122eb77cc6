//! POSIX path names (bytes) as strings, and back, without loss.
//!
//! A POSIX name is any sequence of bytes but `/` and NUL; the API (JSON) and the catalogue
//! (`text` columns) carry valid UTF-8. A name that is valid UTF-8 is carried exactly as it is
//! (so every catalogue and `/api/1.0.0` exchange made before stays the same). Each byte of a
//! name that is not part of a valid UTF-8 sequence (always a byte from `0x80` to `0xFF`) is
//! carried as one reserved code point of the supplementary private use area, `U+10FE00 + byte`
//! (`U+10FE80` to `U+10FEFF`): `caf\xE9.txt` (Latin-1) is carried as `caf\u{10FEE9}.txt`.
//!
//! The encoding is injective: [`decode`] gives back the exact bytes [`encode`] was given. A real
//! name that itself contains one of the reserved code points (as valid UTF-8) cannot be told
//! apart from an encoded byte, so [`encode`] refuses it with an error naming it. Humans see
//! [`display`]: reserved code points and control characters escaped as `\xE9`, `\x0A`.
//!
//! See docs/PROTOCOL.md, "Path names".

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The code point byte `b` (`0x80..=0xFF`) is carried as: `RESERVED_BASE + b`.
pub const RESERVED_BASE: u32 = 0x10_FE00;
/// The first and last reserved code points.
pub const RESERVED_FIRST: char = '\u{10FE80}';
pub const RESERVED_LAST: char = '\u{10FEFF}';

/// A name that cannot be carried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{shown}: the name contains the character U+{cp:X}, which nlds reserves to carry bytes that \
     are not UTF-8 (U+10FE80 to U+10FEFF); rename it to store it"
)]
pub struct ReservedCharacter {
    /// The name, as [`display`] shows it (the reserved character escaped as `\u{..}`).
    pub shown: String,
    pub cp: u32,
}

/// Is `c` one of the reserved code points?
pub fn is_reserved(c: char) -> bool {
    (RESERVED_FIRST..=RESERVED_LAST).contains(&c)
}

/// The raw byte a reserved code point carries.
fn byte_of(c: char) -> Option<u8> {
    is_reserved(c).then(|| (c as u32 - RESERVED_BASE) as u8)
}

fn char_of(b: u8) -> char {
    debug_assert!(b >= 0x80);
    char::from_u32(RESERVED_BASE + u32::from(b)).unwrap_or(char::REPLACEMENT_CHARACTER)
}

/// The string that carries the raw name (or path) `raw`: valid UTF-8 as it is, every other byte
/// as its reserved code point. Refuses a name that contains a reserved code point itself.
pub fn encode(raw: &OsStr) -> Result<String, ReservedCharacter> {
    encode_bytes(raw.as_bytes())
}

/// [`encode`] of bytes.
pub fn encode_bytes(raw: &[u8]) -> Result<String, ReservedCharacter> {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        let valid = chunk.valid();
        if let Some(c) = valid.chars().find(|c| is_reserved(*c)) {
            let mut shown = String::new();
            for chunk in raw.utf8_chunks() {
                for c in chunk.valid().chars() {
                    if is_reserved(c) {
                        let _ = write!(shown, "\\u{{{:X}}}", c as u32);
                    } else {
                        push_shown(&mut shown, c);
                    }
                }
                for b in chunk.invalid() {
                    let _ = write!(shown, "\\x{b:02X}");
                }
            }
            return Err(ReservedCharacter {
                shown,
                cp: c as u32,
            });
        }
        out.push_str(valid);
        out.extend(chunk.invalid().iter().map(|b| char_of(*b)));
    }
    Ok(out)
}

/// The raw bytes `s` carries: every reserved code point as its byte, everything else as its
/// UTF-8. A string that is not the output of [`encode`] (a reserved code point where the bytes
/// would have been valid UTF-8) still decodes; [`canonical`] says whether it is.
pub fn decode(s: &str) -> OsString {
    OsString::from_vec(decode_bytes(s))
}

/// [`decode`] to bytes.
pub fn decode_bytes(s: &str) -> Vec<u8> {
    // Fast path: nothing reserved (every name that is valid UTF-8).
    if !s.chars().any(is_reserved) {
        return s.as_bytes().to_vec();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        match byte_of(c) {
            Some(b) => out.push(b),
            None => out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes()),
        }
    }
    out
}

/// The one encoded form of the name `s` carries (`encode(decode(s))`): `s` itself for every
/// string [`encode`] made; for a string given by hand that spells valid UTF-8 bytes with
/// reserved code points, the UTF-8. An error if the bytes contain a reserved code point.
pub fn canonical(s: &str) -> Result<String, ReservedCharacter> {
    if !s.chars().any(is_reserved) {
        return Ok(s.to_owned());
    }
    encode_bytes(&decode_bytes(s))
}

/// The name `s` (encoded) for humans: the bytes that are not UTF-8 and the control characters
/// escaped as `\xE9`, `\x0A`; everything else as it is.
pub fn display(s: &str) -> String {
    if !s.chars().any(|c| is_reserved(c) || c.is_control()) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match byte_of(c) {
            Some(b) => {
                let _ = write!(out, "\\x{b:02X}");
            }
            None => push_shown(&mut out, c),
        }
    }
    out
}

fn push_shown(out: &mut String, c: char) {
    if c.is_control() && (c as u32) < 0x80 {
        let _ = write!(out, "\\x{:02X}", c as u32);
    } else if c.is_control() {
        let _ = write!(out, "\\u{{{:X}}}", c as u32);
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round(raw: &[u8]) -> Vec<u8> {
        decode_bytes(&encode_bytes(raw).unwrap())
    }

    #[test]
    fn utf8_names_are_carried_unchanged() {
        for s in [
            "/data/ü/a b.nc",
            "",
            "/",
            "日本語/файл",
            "a\nb",
            "\u{FFFD}",
            "\u{10FE7F}",
        ] {
            assert_eq!(encode(OsStr::new(s)).unwrap(), s);
            assert_eq!(decode(s), OsStr::new(s));
            assert_eq!(canonical(s).unwrap(), s);
        }
    }

    #[test]
    fn latin1_is_carried_as_reserved_code_points() {
        let raw = b"/data/caf\xe9.txt";
        let s = encode_bytes(raw).unwrap();
        assert_eq!(s, "/data/caf\u{10FEE9}.txt");
        assert_eq!(decode_bytes(&s), raw);
        assert_eq!(display(&s), "/data/caf\\xE9.txt");
        assert_eq!(display("a\nb\tc"), "a\\x0Ab\\x09c");
        assert_eq!(display("/plain/ü"), "/plain/ü");
    }

    #[test]
    fn a_real_reserved_character_is_refused() {
        let e = encode(OsStr::new("/d/x\u{10FEE9}y")).unwrap_err();
        assert_eq!(e.cp, 0x10FEE9);
        assert!(e.to_string().contains("/d/x\\u{10FEE9}y"), "{e}");
        assert!(e.to_string().contains("rename it"), "{e}");
        // Not reserved: the code points either side.
        assert!(encode(OsStr::new("\u{10FE7F}\u{10FF00}")).is_ok());
    }

    #[test]
    fn a_hand_made_spelling_of_utf8_is_made_canonical() {
        // "é" as two reserved code points (C3 A9) is the same name as "é".
        let odd = "\u{10FEC3}\u{10FEA9}";
        assert_eq!(decode_bytes(odd), "é".as_bytes());
        assert_eq!(canonical(odd).unwrap(), "é");
        assert_eq!(canonical("x\u{10FEE9}").unwrap(), "x\u{10FEE9}");
    }

    #[test]
    fn every_pair_of_bytes_round_trips() {
        let mut seen = std::collections::HashSet::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let raw = [b'/', a, b, b'x'];
                let s = encode_bytes(&raw).unwrap();
                assert_eq!(round(&raw), raw, "{a:02x} {b:02x}");
                assert_eq!(canonical(&s).unwrap(), s);
                assert!(seen.insert(s), "two names encoded alike: {a:02x} {b:02x}");
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_round_trip(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            // A raw name may spell a reserved code point in UTF-8: that one is refused.
            match encode_bytes(&raw) {
                Ok(s) => {
                    prop_assert_eq!(decode_bytes(&s), raw);
                    prop_assert_eq!(canonical(&s).unwrap(), s.clone());
                    if let Ok(plain) = std::str::from_utf8(&decode_bytes(&s)) {
                        prop_assert_eq!(plain, s.as_str());
                    }
                }
                Err(e) => prop_assert!(
                    raw.utf8_chunks().any(|c| c.valid().chars().any(is_reserved)),
                    "{}",
                    e
                ),
            }
        }

        #[test]
        fn arbitrary_strings_without_reserved_are_unchanged(s in "\\PC*") {
            prop_assume!(!s.chars().any(is_reserved));
            prop_assert_eq!(encode(OsStr::new(&s)).unwrap(), s.clone());
            prop_assert_eq!(decode(&s), OsString::from(&s));
        }
    }
}
