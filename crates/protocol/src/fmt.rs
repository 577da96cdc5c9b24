//! How numbers are written for people: the one thousands-separator format used by the
//! providers' rate-limit messages (`Limit 30,000, Used 29,500`), which the simulator
//! reproduces, and by our own reports and admission errors.
//!
//! It owns the text of a number and nothing else: units, rounding and wording stay with
//! the message that uses it.

/// `n` with a comma between each group of three digits: `30000` → `30,000`.
///
/// Takes any unsigned integer up to `u128`, so sums kept wide to rule out overflow print
/// the same way as plain counts.
///
/// ```
/// use tokenpace_protocol::fmt::thousands;
///
/// assert_eq!(thousands(0u64), "0");
/// assert_eq!(thousands(999u64), "999");
/// assert_eq!(thousands(1_234_567u64), "1,234,567");
/// assert_eq!(thousands(250_000u128), "250,000");
/// ```
pub fn thousands(n: impl Into<u128>) -> String {
    let digits = n.into().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_three_from_the_right() {
        assert_eq!(thousands(0u64), "0");
        assert_eq!(thousands(999u64), "999");
        assert_eq!(thousands(1_000u64), "1,000");
        assert_eq!(thousands(30_000_000u64), "30,000,000");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(
            thousands(u128::MAX),
            "340,282,366,920,938,463,463,374,607,431,768,211,455"
        );
    }
}
