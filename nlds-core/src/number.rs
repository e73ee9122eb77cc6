//! Numbers from requests that reach the database (paging, ids): the database holds `i64`, so a
//! value outside `0..=i64::MAX` is a bad request naming the parameter, never a panic deeper down.

use crate::error::ApiError;

/// The largest paging number or id the database can hold.
pub const DB_MAX: u64 = i64::MAX as u64;

fn out_of_range(name: &str, value: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{name} {value} is out of range (0..=9223372036854775807)"
    ))
}

/// A paging number (`offset`, `limit`) the database can hold.
pub fn db_count(name: &str, value: u64) -> Result<u64, ApiError> {
    if value > DB_MAX {
        Err(out_of_range(name, value))
    } else {
        Ok(value)
    }
}

/// An id (`holding_id`, `id`) the database can hold: not negative.
pub fn db_id(name: &str, value: i64) -> Result<i64, ApiError> {
    if value < 0 {
        Err(out_of_range(name, value))
    } else {
        Ok(value)
    }
}

/// Parses a decimal paging number or id from text (a legacy query parameter): `Ok(None)` when
/// it is not an integer at all (the caller's own "not a valid integer" error), an out-of-range
/// error naming `name` when it is an integer outside `0..=i64::MAX`.
pub fn parse_db(name: &str, text: &str) -> Result<Option<i64>, ApiError> {
    let t = text.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match t.parse::<i64>() {
        Ok(v) if v >= 0 => Ok(Some(v)),
        _ => Err(out_of_range(name, t)),
    }
}

/// For `skip_serializing_if`: a count of zero is left out.
pub fn is_zero<T: Default + PartialEq>(n: &T) -> bool {
    *n == T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_numbers_name_their_parameter() {
        assert_eq!(db_count("offset", 5).unwrap(), 5);
        assert_eq!(db_count("offset", DB_MAX).unwrap(), DB_MAX);
        assert_eq!(
            db_count("offset", u64::MAX).unwrap_err().message,
            "offset 18446744073709551615 is out of range (0..=9223372036854775807)"
        );
        assert!(
            db_id("holding_id", -1)
                .unwrap_err()
                .message
                .starts_with("holding_id -1 ")
        );
        assert_eq!(parse_db("limit", " 7 ").unwrap(), Some(7));
        assert_eq!(parse_db("limit", "x").unwrap(), None);
        assert!(parse_db("limit", "99999999999999999999").is_err());
        assert!(parse_db("holding_id", "-3").is_err());
    }
}
