//! LogQL engine of miru.
//!
//! Input: a LogQL query. Output: its syntax tree ([`syntax::ast`]) and the
//! compiled log pipeline ([`pipeline::Pipeline`]) with Loki 3 semantics.

pub mod pipeline;
pub mod syntax;

pub use syntax::{ParseError, parse};
