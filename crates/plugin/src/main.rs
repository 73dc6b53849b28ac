//! `aws-cni`: the CNI plugin binary. See the crate docs of `aws_cni`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = if std::env::var("CNI_COMMAND").as_deref() == Ok("VERSION") && atty_stdin() {
        Vec::new()
    } else {
        aws_cni::read_stdin()
    };
    // Invalid UTF-8 is passed on (lossily) so it is reported as an invalid value, not as a
    // missing variable.
    let out = aws_cni::run(
        &|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()),
        &stdin,
    );
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.stdout.as_bytes());
    let _ = so.flush();
    ExitCode::from(out.code)
}

/// VERSION may be run by hand without stdin; do not block on a terminal.
fn atty_stdin() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal()
}
