//! `egress-cni`: the chained egress plugin binary. See `aws_cni::egress`.

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let stdin = if std::env::var("CNI_COMMAND").as_deref() == Ok("VERSION")
        && std::io::IsTerminal::is_terminal(&std::io::stdin())
    {
        Vec::new()
    } else {
        aws_cni::read_stdin()
    };
    let out = aws_cni::egress::run(
        &|k| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned()),
        &stdin,
    );
    let mut so = std::io::stdout().lock();
    let _ = so.write_all(out.stdout.as_bytes());
    let _ = so.flush();
    ExitCode::from(out.code)
}
