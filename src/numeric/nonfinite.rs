//! Serde helpers for `f64` values that may be non-finite: JSON has no infinities or NaN, so
//! cells write them as the strings `"inf"`, `"-inf"` and `"nan"` and read them back exactly
//! (finite values are plain JSON numbers, round-tripped exactly).
//!
//! Use as `#[serde(with = "crate::numeric::nonfinite")]` on an `f64` field, or
//! `#[serde(with = "crate::numeric::nonfinite::vec")]` on a `Vec<f64>`.

use serde::{Deserialize, Deserializer, Serializer};
use serde_json::Value;

/// The JSON value of `x`: a number when finite, else `"inf"`, `"-inf"` or `"nan"`.
#[must_use]
pub fn to_json(x: f64) -> Value {
    if x.is_finite() {
        serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
    } else if x.is_nan() {
        Value::from("nan")
    } else if x > 0.0 {
        Value::from("inf")
    } else {
        Value::from("-inf")
    }
}

/// The `f64` of a JSON value written by [`to_json`] (`None` for anything else).
#[must_use]
pub fn from_json(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            "nan" => Some(f64::NAN),
            _ => None,
        },
        _ => None,
    }
}

/// Serialises an `f64` as [`to_json`] does.
///
/// # Errors
/// The serializer's.
pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_finite() {
        s.serialize_f64(*x)
    } else if x.is_nan() {
        s.serialize_str("nan")
    } else if *x > 0.0 {
        s.serialize_str("inf")
    } else {
        s.serialize_str("-inf")
    }
}

/// Deserialises an `f64` written by [`serialize`].
///
/// # Errors
/// Anything but a number or one of the three strings.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let v = Value::deserialize(d)?;
    from_json(&v).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a number, \"inf\", \"-inf\" or \"nan\", got {v}"
        ))
    })
}

/// The same for `Vec<f64>`.
pub mod vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use serde_json::Value;

    /// Serialises each element as [`super::to_json`] does.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(x: &[f64], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(x.len()))?;
        for v in x {
            seq.serialize_element(&super::to_json(*v))?;
        }
        seq.end()
    }

    /// Deserialises a sequence written by [`serialize`].
    ///
    /// # Errors
    /// Anything but a sequence of numbers or the three strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        let v = Vec::<Value>::deserialize(d)?;
        v.iter()
            .map(|e| {
                super::from_json(e).ok_or_else(|| {
                    serde::de::Error::custom(format!("expected a number or \"inf\", got {e}"))
                })
            })
            .collect()
    }
}

/// The same for a [`crate::quadrature::Estimate`]: `{"value": .., "err": ..}` with each field
/// written as [`to_json`] does (an infinite path KL of a degenerate kernel stays `"inf"`).
pub mod estimate {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::quadrature::Estimate;

    #[derive(Serialize, Deserialize)]
    struct Wire {
        #[serde(with = "super")]
        value: f64,
        #[serde(with = "super")]
        err: f64,
    }

    /// Serialises `e` with non-finite fields as strings.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(e: &Estimate, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            value: e.value,
            err: e.err,
        }
        .serialize(s)
    }

    /// Deserialises an estimate written by [`serialize`].
    ///
    /// # Errors
    /// A missing field, or a field that is neither a number nor one of the three strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Estimate, D::Error> {
        let w = Wire::deserialize(d)?;
        Ok(Estimate {
            value: w.value,
            err: w.err,
        })
    }
}

#[cfg(test)]
mod tests {

    #[derive(serde::Serialize, serde::Deserialize)]
    struct W {
        #[serde(with = "super")]
        x: f64,
        #[serde(with = "super::vec")]
        v: Vec<f64>,
    }

    #[derive(serde::Serialize, serde::Deserialize)]
    struct E {
        #[serde(with = "super::estimate")]
        e: crate::quadrature::Estimate,
    }

    #[test]
    fn estimates_keep_infinities_as_strings() {
        let w = E {
            e: crate::quadrature::Estimate {
                value: f64::INFINITY,
                err: 0.1 + 0.2,
            },
        };
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"e":{{"value":"inf","err":{}}}}}"#, 0.1f64 + 0.2)
        );
        let back: E = serde_json::from_str(&text).unwrap();
        assert!(back.e.value.is_infinite() && back.e.value > 0.0);
        assert_eq!(back.e.err.to_bits(), (0.1f64 + 0.2).to_bits());
        assert!(serde_json::from_str::<E>(r#"{"e":{"value":1.0}}"#).is_err());
    }

    #[test]
    fn non_finite_and_finite_round_trip_exactly() {
        let w = W {
            x: f64::INFINITY,
            v: vec![0.1 + 0.2, f64::NEG_INFINITY, -0.0, 1e-300],
        };
        let text = serde_json::to_string(&w).unwrap();
        let back: W = serde_json::from_str(&text).unwrap();
        assert!(back.x.is_infinite() && back.x > 0.0);
        assert_eq!(back.v[0].to_bits(), (0.1f64 + 0.2).to_bits());
        assert!(back.v[1].is_infinite() && back.v[1] < 0.0);
        assert_eq!(back.v[2].to_bits(), (-0.0f64).to_bits());
        assert_eq!(back.v[3].to_bits(), 1e-300f64.to_bits());
        let nan: W = serde_json::from_str(r#"{"x": "nan", "v": []}"#).unwrap();
        assert!(nan.x.is_nan());
        assert!(serde_json::from_str::<W>(r#"{"x": "infinity", "v": []}"#).is_err());
    }
}
