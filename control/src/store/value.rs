//! The two column types the schema uses (`BIGINT`, `TEXT`), as parameters
//! and as read-back values, for both backends.

use crate::error::{ControlError, Result};
use crate::time::Millis;
use bytes::BytesMut;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Val {
    /// `BIGINT`, maybe NULL.
    Int(Option<i64>),
    /// `TEXT`, maybe NULL.
    Text(Option<String>),
    /// A NULL read back from SQLite (which does not type its NULLs).
    Null,
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(Some(v))
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::Int(v)
    }
}
impl From<Millis> for Val {
    fn from(v: Millis) -> Self {
        Val::Int(Some(v.0))
    }
}
impl From<Option<Millis>> for Val {
    fn from(v: Option<Millis>) -> Self {
        Val::Int(v.map(|m| m.0))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(Some(v.to_owned()))
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(Some(v.clone()))
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(Some(v))
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        Val::Text(v.map(str::to_owned))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::Text(v)
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Int(Some(v)) if <i64 as ToSql>::accepts(ty) => v.to_sql(ty, out),
            Val::Text(Some(v)) if <String as ToSql>::accepts(ty) => v.to_sql(ty, out),
            Val::Int(None) | Val::Text(None) | Val::Null => Ok(IsNull::Yes),
            other => Err(format!("parameter {other:?} does not fit column type {ty}").into()),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

/// One row read back (serialisable: the API's cache keeps rows as read).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Row(pub Vec<Val>);

impl Row {
    fn at(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| ControlError::Row(format!("no column {i}")))
    }

    /// A nullable `BIGINT`.
    pub fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            Val::Null | Val::Text(None) => Ok(None),
            other => Err(ControlError::Row(format!("column {i}: want int, got {other:?}"))),
        }
    }

    /// A `BIGINT NOT NULL`.
    pub fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| ControlError::Row(format!("column {i} is NULL")))
    }

    /// A nullable `TEXT`.
    pub fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Val::Text(v) => Ok(v.clone()),
            Val::Null | Val::Int(None) => Ok(None),
            other => Err(ControlError::Row(format!("column {i}: want text, got {other:?}"))),
        }
    }

    /// A `TEXT NOT NULL`.
    pub fn text(&self, i: usize) -> Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| ControlError::Row(format!("column {i} is NULL")))
    }

    /// A nullable time.
    pub fn opt_millis(&self, i: usize) -> Result<Option<Millis>> {
        Ok(self.opt_int(i)?.map(Millis))
    }

    /// A time.
    pub fn millis(&self, i: usize) -> Result<Millis> {
        Ok(Millis(self.int(i)?))
    }

    /// A nullable name parsed into an enum.
    pub fn opt_enum<T>(&self, i: usize, parse: fn(&str) -> Option<T>) -> Result<Option<T>> {
        match self.opt_text(i)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .ok_or_else(|| ControlError::Row(format!("column {i}: unknown value {s:?}"))),
        }
    }

    /// A name parsed into an enum.
    pub fn enum_of<T>(&self, i: usize, parse: fn(&str) -> Option<T>) -> Result<T> {
        self.opt_enum(i, parse)?
            .ok_or_else(|| ControlError::Row(format!("column {i} is NULL")))
    }

    /// A JSON text column.
    pub fn json(&self, i: usize) -> Result<serde_json::Value> {
        match self.opt_text(i)? {
            None => Ok(serde_json::Value::Null),
            Some(s) => {
                serde_json::from_str(&s).map_err(|e| ControlError::Row(format!("column {i}: bad JSON: {e}")))
            }
        }
    }
}
