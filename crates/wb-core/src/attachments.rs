//! Rules for attachments (files linked to a company's books): what a file's
//! name and media type may be.

/// Longest file name, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// Longest media type (with parameters), in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 255;
/// The media type of a file uploaded without one.
pub const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error(
        "a file name must be 1 to {MAX_FILE_NAME_CHARS} characters, without control \
         characters, / or \\, and not . or .."
    )]
    InvalidName,
    #[error(
        "a media type must look like type/subtype (optionally with ;parameters), at most \
         {MAX_CONTENT_TYPE_LEN} printable ASCII characters"
    )]
    InvalidContentType,
}

/// A file name as given, when acceptable: never a path.
pub fn validate_file_name(name: &str) -> Result<&str, AttachmentError> {
    let count = name.chars().count();
    let acceptable = (1..=MAX_FILE_NAME_CHARS).contains(&count)
        && !name.trim().is_empty()
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\' || is_invisible_format(c));
    acceptable
        .then_some(name)
        .ok_or(AttachmentError::InvalidName)
}

/// Characters that change how a name displays (bidirectional overrides,
/// zero-width marks), used to disguise `invoice.exe` as `invoice.pdf`.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
}

/// A media type (`type/subtype`, optional `; parameters`), lowercased in its
/// type and subtype; `None` gives `application/octet-stream`.
pub fn normalize_content_type(content_type: Option<&str>) -> Result<String, AttachmentError> {
    let Some(text) = content_type.map(str::trim) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    };
    if text.is_empty() {
        return Ok(DEFAULT_CONTENT_TYPE.to_string());
    }
    if text.len() > MAX_CONTENT_TYPE_LEN || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(AttachmentError::InvalidContentType);
    }
    let (essence, params) = match text.split_once(';') {
        Some((essence, params)) => (essence.trim(), Some(params)),
        None => (text, None),
    };
    let (kind, subtype) = essence
        .split_once('/')
        .ok_or(AttachmentError::InvalidContentType)?;
    if !is_token(kind) || !is_token(subtype) {
        return Err(AttachmentError::InvalidContentType);
    }
    let mut out = format!(
        "{}/{}",
        kind.to_ascii_lowercase(),
        subtype.to_ascii_lowercase()
    );
    if let Some(params) = params {
        for param in params.split(';') {
            let (name, value) = param
                .trim()
                .split_once('=')
                .ok_or(AttachmentError::InvalidContentType)?;
            let quoted = value.len() >= 2 && value.starts_with('"') && value.ends_with('"');
            if !is_token(name.trim()) || !(is_token(value) || quoted) {
                return Err(AttachmentError::InvalidContentType);
            }
            out.push_str("; ");
            out.push_str(&name.trim().to_ascii_lowercase());
            out.push('=');
            out.push_str(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in [
            "receipt.pdf",
            "Rechnung März 2026.png",
            "a",
            &"x".repeat(255),
            "..hidden",
        ] {
            assert_eq!(validate_file_name(good), Ok(good), "{good:?}");
        }
        for bad in [
            "",
            "   ",
            ".",
            "..",
            "../etc/passwd",
            "dir/file",
            "c:\\boot.ini",
            "line\nbreak",
            "nul\0",
            "tab\t",
            "invoice\u{202E}fdp.exe",
            &"x".repeat(256),
        ] {
            assert_eq!(
                validate_file_name(bad),
                Err(AttachmentError::InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn content_types() {
        assert_eq!(normalize_content_type(None).unwrap(), DEFAULT_CONTENT_TYPE);
        assert_eq!(
            normalize_content_type(Some(" ")).unwrap(),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(
            normalize_content_type(Some("Image/PNG")).unwrap(),
            "image/png"
        );
        assert_eq!(
            normalize_content_type(Some("text/plain;charset=utf-8")).unwrap(),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            normalize_content_type(Some(
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            ))
            .unwrap(),
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        );
        for bad in [
            "png",
            "image/",
            "/png",
            "image/png\r\nX-Evil: 1",
            "text/plain; charset",
            "a b/c",
            "täxt/plain",
            &format!("a/{}", "b".repeat(300)),
        ] {
            assert_eq!(
                normalize_content_type(Some(bad)),
                Err(AttachmentError::InvalidContentType),
                "{bad:?}"
            );
        }
    }
}
