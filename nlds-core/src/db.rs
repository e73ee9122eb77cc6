//! Database column conversions (feature `db`): the enums stored as text get sea-orm's
//! `DeriveValueType` over their strum strings, `State` gets `DeriveActiveEnum` over its NLDS number.
//! A stored value that does not parse is an error naming the type and the value, never a default.

use std::str::FromStr;

/// A stored text that is not a value of the column's type.
#[derive(Debug, thiserror::Error)]
#[error("unknown {type_name} value {value:?} in the database")]
pub struct UnknownValue {
    /// The Rust type of the column.
    pub type_name: &'static str,
    /// The stored text.
    pub value: String,
}

/// Parses a stored text with the type's `FromStr` (its strum strings).
pub fn parse<T: FromStr>(value: &str) -> Result<T, UnknownValue> {
    value.parse().map_err(|_| UnknownValue {
        type_name: short_name::<T>(),
        value: value.to_owned(),
    })
}

/// `nlds_core::api::Tier` -> `Tier`.
fn short_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Tier;

    #[test]
    fn unknown_value_names_type_and_value() {
        let err = parse::<Tier>("tepid").unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"unknown Tier value "tepid" in the database"#
        );
        assert_eq!(parse::<Tier>("cold").unwrap(), Tier::Cold);
    }
}
