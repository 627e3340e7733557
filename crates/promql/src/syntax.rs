//! The one way into `promql-parser`. Version 0.11 panics instead of
//! failing on some input: a plain number of 2^64 seconds or more where a
//! duration goes (`x[1e30]`, `x[5m:1e30]`, `x offset 1e30`) reaches
//! `Duration::from_secs_f64`, which panics. Such numbers are refused here
//! first, and any other panic of the parser is turned into a parse error,
//! so that no query text can take a request (or the fuzzer) down.

use std::panic::{AssertUnwindSafe, catch_unwind};

use promql_parser::parser::Expr;

use crate::position::{huge_duration_number, nesting_exceeds};

/// How deep a query's syntax tree may be, as bounded by
/// [`nesting_exceeds`]: the parser's tree, its drop, the planner and the
/// evaluator are recursive, and a deeper tree (`((((…1…))))`, a chain of
/// thousands of `+`) would overflow the thread's stack and abort the
/// process. Real queries stay far below this.
pub const MAX_NESTING: usize = 512;

/// Parses a PromQL expression; the error is promql-parser's message.
pub fn parse(query: &str) -> Result<Expr, String> {
    if nesting_exceeds(query, MAX_NESTING).is_some() {
        return Err(format!(
            "expression nested too deeply: more than {MAX_NESTING} levels of brackets and operators"
        ));
    }
    if let Some(number) = huge_duration_number(query) {
        return Err(format!("duration out of range: {number}"));
    }
    match catch_unwind(AssertUnwindSafe(|| promql_parser::parser::parse(query))) {
        Ok(r) => r,
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".to_string());
            Err(format!("the parser failed on this input: {why}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn numbers_too_large_for_a_duration_are_refused_not_panicked_on() {
        for q in [
            "x[1e30]",
            "x[5m:1e30]",
            "x[1e30:1m]",
            "x offset 1e30",
            "x offset -1e30",
            "x[1e+30]",
            "x offset 1E+30",
            "x[5m:18446744073709551616]",
            "x[5m:1e+30]",
            "x[ 1e30 : 1m ]",
            "sum_over_time(x[20s])[20s:2222222222222222222222222222222222]",
        ] {
            let e = parse(q).expect_err(q);
            assert!(e.starts_with("duration out of range: "), "{q}: {e}");
        }
        // Large numbers elsewhere, and large durations that fit, still parse.
        for q in [
            "x @ 1e30",
            "1e30 + x",
            "x[1e19]",
            "x offset 1.8e19",
            "x[5m:1e-30]",
        ] {
            assert!(parse(q).is_ok(), "{q}");
        }
    }
}
