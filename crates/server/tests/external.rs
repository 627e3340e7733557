//! Finding the external programs that some black-box tests drive (the
//! Debian `prometheus` binary, the Python virtualenv with the OpenTelemetry
//! SDK and moto), and guarding their child processes.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// The workspace root (`crates/server/../..`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Python of the test virtualenv: `$MIRU_TEST_PYTHON`, else
/// `target/pyenv/bin/python` under the workspace root.
pub fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MIRU_TEST_PYTHON").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    let p = workspace_root().join("target/pyenv/bin/python");
    p.is_file().then_some(p)
}

/// A program installed next to [`python()`] in the virtualenv, e.g.
/// `moto_server`.
pub fn venv_bin(name: &str) -> Option<PathBuf> {
    let p = python()?.parent()?.join(name);
    p.is_file().then_some(p)
}

/// `prometheus` from `PATH`.
pub fn prometheus() -> Option<PathBuf> {
    which("prometheus")
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Whether a test that needs `what` can run. When it is missing and
/// `MIRU_REQUIRE_EXTERNAL` is set (as `scripts/test.sh` and CI do) this
/// panics, so that CI never passes by skipping; otherwise it says loudly
/// that the test is skipped and returns false.
pub fn require_or_skip(what: &str, found: bool) -> bool {
    if found {
        return true;
    }
    if std::env::var_os("MIRU_REQUIRE_EXTERNAL").is_some_and(|v| !v.is_empty()) {
        panic!(
            "{what} is not installed but MIRU_REQUIRE_EXTERNAL is set; \
             run scripts/test.sh (it installs the Debian `prometheus` package and \
             the Python clients of tests/python-requirements.txt into target/pyenv)"
        );
    }
    eprintln!("\n======== SKIPPED: {what} not installed; run scripts/test.sh ========\n");
    false
}

/// A child process that is killed (SIGKILL) and reaped when dropped, also
/// when the test panics.
pub struct ChildGuard {
    pub name: &'static str,
    pub child: Child,
    /// Where its output goes, shown by [`ChildGuard::log`].
    pub log_path: PathBuf,
}

impl ChildGuard {
    pub fn new(name: &'static str, child: Child, log_path: PathBuf) -> ChildGuard {
        ChildGuard {
            name,
            child,
            log_path,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Panics with the log if the process has already exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "{} exited early with {status}; log:\n{}",
                self.name,
                self.log()
            );
        }
    }

    /// Polls `ready` every 100 ms until it returns true, `timeout` passes
    /// (panic) or the process exits (panic).
    pub fn wait_until(&mut self, timeout: Duration, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            if ready() {
                return;
            }
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} not ready after {timeout:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `script` (which imports `duckdb` and prints JSON) with the test
/// virtualenv's Python and `arg` as `sys.argv[1]`; its output parsed, or
/// `None` after [`require_or_skip`] when Python or duckdb is missing.
pub fn duckdb_json(script: &str, arg: &str) -> Option<serde_json::Value> {
    let Some(py) = python() else {
        require_or_skip("Python duckdb (target/pyenv)", false);
        return None;
    };
    let out = std::process::Command::new(py)
        .args(["-c", script, arg])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("No module named 'duckdb'") {
        require_or_skip("Python duckdb (tests/python-requirements.txt)", false);
        return None;
    }
    assert!(out.status.success(), "{stderr}");
    Some(serde_json::from_slice(&out.stdout).unwrap())
}
