//! A small XML writer for EC2's response documents.

/// Escape text for an XML element.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `<name>text</name>` with the text escaped.
pub fn el(name: &str, text: impl std::fmt::Display) -> String {
    format!("<{name}>{}</{name}>", esc(&text.to_string()))
}

/// `<name>` around already-built children.
pub fn wrap(name: &str, children: impl AsRef<str>) -> String {
    format!("<{name}>{}</{name}>", children.as_ref())
}

/// `<name><item>…</item>…</name>`.
pub fn set<I: IntoIterator<Item = String>>(name: &str, items: I) -> String {
    wrap(
        name,
        items
            .into_iter()
            .map(|i| wrap("item", i))
            .collect::<String>(),
    )
}

/// EC2's API version namespace.
pub const NS: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";

/// A success document: `<{Action}Response xmlns=…><requestId/>{body}</{Action}Response>`.
pub fn response(action: &str, request_id: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response xmlns=\"{NS}\"><requestId>{request_id}</requestId>{body}</{action}Response>"
    )
}

/// An error document as EC2 writes it.
pub fn error(code: &str, message: &str, request_id: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        esc(code),
        esc(message)
    )
}
