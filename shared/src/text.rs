//! Characters a name or a keyword must not hold: controls (`char::is_control`, category Cc)
//! and Unicode format characters (category Cf: bidi overrides and isolates, zero-width
//! spaces and joiners, the BOM, invisible operators, tags), which make a name read
//! differently from what it is. The Cf table is Unicode 16's, short and stable.

/// Unicode general category Cf.
pub fn is_format(c: char) -> bool {
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A control or format character: not allowed in names people read.
pub fn unprintable(c: char) -> bool {
    c.is_control() || is_format(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_format_characters_are_unprintable() {
        for c in [
            '\u{7}',
            '\n',
            '\u{202E}',
            '\u{200B}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{E0041}',
        ] {
            assert!(unprintable(c), "{:04X}", c as u32);
        }
        for c in ['a', 'é', '日', ' ', '-', '\u{1F600}'] {
            assert!(!unprintable(c), "{:04X}", c as u32);
        }
    }
}
