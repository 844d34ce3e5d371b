//! Range checks shared by every model's config: each error names the
//! field and the value that broke the rule.

use crate::Error;

/// Every value finite and > 0.
pub(crate) fn positive(fields: &[(&'static str, f64)]) -> Result<(), Error> {
    for &(field, v) in fields {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::config(field, format!("{v} must be finite and > 0")));
        }
    }
    Ok(())
}

/// Every value finite and >= 0.
pub(crate) fn non_negative(fields: &[(&'static str, f64)]) -> Result<(), Error> {
    for &(field, v) in fields {
        if !(v.is_finite() && v >= 0.0) {
            return Err(Error::config(field, format!("{v} must be finite and >= 0")));
        }
    }
    Ok(())
}
