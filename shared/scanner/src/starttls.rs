//! The plaintext exchanges that lead to a TLS handshake: SMTP and IMAP `STARTTLS`, POP3
//! `STLS`, FTP `AUTH TLS`, the PostgreSQL `SSLRequest`, and LDAP's StartTLS extended operation.
//!
//! Replies are read a byte at a time: a buffered reader could swallow the first bytes of the
//! TLS handshake, and these exchanges are a few hundred bytes at most.

use certpilot_core::model::target::Protocol;
use certpilot_core::{ErrorKind, ProbeError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::tls::io_error;

/// Longest reply line accepted, and most lines in one reply: a peer that sends more is not
/// speaking the protocol.
const MAX_LINE: usize = 8192;
const MAX_LINES: usize = 200;

/// Runs `protocol`'s upgrade on `stream`; on success the next bytes are the TLS handshake.
pub(crate) async fn upgrade(stream: &mut TcpStream, protocol: Protocol) -> Result<(), ProbeError> {
    match protocol {
        Protocol::Smtp => smtp(stream).await,
        Protocol::Imap => imap(stream).await,
        Protocol::Pop3 => pop3(stream).await,
        Protocol::Ftp => ftp(stream).await,
        Protocol::Postgres => postgres(stream).await,
        Protocol::Ldap => ldap(stream).await,
        _ => Ok(()),
    }
}

fn refused(protocol: &str, detail: impl std::fmt::Display) -> ProbeError {
    ProbeError::new(ErrorKind::StarttlsRefused, format!("{protocol}: {detail}"))
}

async fn smtp(stream: &mut TcpStream) -> Result<(), ProbeError> {
    let greeting = reply_with_code(stream, "smtp").await?;
    if greeting.code != 220 {
        return Err(refused("smtp", format!("greeting was {:?}", greeting.last)));
    }
    send(stream, b"EHLO certpilot.invalid\r\n").await?;
    let ehlo = reply_with_code(stream, "smtp").await?;
    if ehlo.code != 250 {
        return Err(refused("smtp", format!("EHLO answered {:?}", ehlo.last)));
    }
    if !ehlo.lines.iter().any(|l| {
        l.get(4..)
            .is_some_and(|ext| ext.to_ascii_uppercase().starts_with("STARTTLS"))
    }) {
        return Err(refused(
            "smtp",
            "server does not offer STARTTLS in its EHLO reply",
        ));
    }
    send(stream, b"STARTTLS\r\n").await?;
    let go = reply_with_code(stream, "smtp").await?;
    if go.code != 220 {
        return Err(refused("smtp", format!("STARTTLS answered {:?}", go.last)));
    }
    Ok(())
}

async fn imap(stream: &mut TcpStream) -> Result<(), ProbeError> {
    let greeting = line(stream, "imap").await?;
    if !greeting.starts_with("* OK") {
        return Err(refused("imap", format!("greeting was {greeting:?}")));
    }
    send(stream, b"cp1 STARTTLS\r\n").await?;
    for _ in 0..MAX_LINES {
        let l = line(stream, "imap").await?;
        if let Some(status) = l.strip_prefix("cp1 ") {
            return if status.to_ascii_uppercase().starts_with("OK") {
                Ok(())
            } else {
                Err(refused("imap", format!("STARTTLS answered {l:?}")))
            };
        }
    }
    Err(not_protocol("imap", "no tagged reply to STARTTLS"))
}

async fn pop3(stream: &mut TcpStream) -> Result<(), ProbeError> {
    let greeting = line(stream, "pop3").await?;
    if !greeting.starts_with("+OK") {
        return Err(refused("pop3", format!("greeting was {greeting:?}")));
    }
    send(stream, b"STLS\r\n").await?;
    let reply = line(stream, "pop3").await?;
    if reply.starts_with("+OK") {
        Ok(())
    } else {
        Err(refused("pop3", format!("STLS answered {reply:?}")))
    }
}

async fn ftp(stream: &mut TcpStream) -> Result<(), ProbeError> {
    let greeting = reply_with_code(stream, "ftp").await?;
    if greeting.code != 220 {
        return Err(refused("ftp", format!("greeting was {:?}", greeting.last)));
    }
    send(stream, b"AUTH TLS\r\n").await?;
    let reply = reply_with_code(stream, "ftp").await?;
    if reply.code != 234 {
        return Err(refused(
            "ftp",
            format!("AUTH TLS answered {:?}", reply.last),
        ));
    }
    Ok(())
}

/// PostgreSQL's SSLRequest: length 8, code 80877103 (protocol docs, "SSL Session Encryption").
async fn postgres(stream: &mut TcpStream) -> Result<(), ProbeError> {
    send(stream, &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).await?;
    let mut answer = [0u8; 1];
    read_exact(stream, &mut answer, "postgres").await?;
    match answer[0] {
        b'S' => Ok(()),
        b'N' => Err(refused(
            "postgres",
            "server does not accept SSL connections",
        )),
        b'E' => Err(refused(
            "postgres",
            "server answered the SSLRequest with an error",
        )),
        other => Err(not_protocol(
            "postgres",
            format!("unexpected answer byte 0x{other:02x} to SSLRequest"),
        )),
    }
}

/// LDAP StartTLS (RFC 4511 4.14): an ExtendedRequest with OID 1.3.6.1.4.1.1466.20037, and an
/// ExtendedResponse whose resultCode must be success (0).
async fn ldap(stream: &mut TcpStream) -> Result<(), ProbeError> {
    const OID: &[u8] = b"1.3.6.1.4.1.1466.20037";
    let mut request = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
    request.extend_from_slice(OID);
    send(stream, &request).await?;

    let mut head = [0u8; 2];
    read_exact(stream, &mut head, "ldap").await?;
    if head[0] != 0x30 {
        return Err(not_protocol(
            "ldap",
            format!("reply starts with 0x{:02x}, not an LDAPMessage", head[0]),
        ));
    }
    let len = ber_length(stream, head[1]).await?;
    let mut body = vec![0u8; len];
    read_exact(stream, &mut body, "ldap").await?;
    let code = ldap_result_code(&body)
        .ok_or_else(|| not_protocol("ldap", "malformed ExtendedResponse"))?;
    match code {
        0 => Ok(()),
        code => Err(refused(
            "ldap",
            format!("StartTLS answered resultCode {code}"),
        )),
    }
}

async fn ber_length(stream: &mut TcpStream, first: u8) -> Result<usize, ProbeError> {
    if first & 0x80 == 0 {
        return Ok(usize::from(first));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 3 {
        return Err(not_protocol("ldap", "reply length is out of range"));
    }
    let mut bytes = [0u8; 3];
    read_exact(stream, &mut bytes[..n], "ldap").await?;
    Ok(bytes[..n]
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b)))
}

/// Finds the resultCode in an LDAPMessage body: messageID INTEGER, then
/// [APPLICATION 24] ExtendedResponse whose first element is resultCode ENUMERATED.
fn ldap_result_code(body: &[u8]) -> Option<u8> {
    let (tag, _, rest) = ber_element(body)?;
    if tag != 0x02 {
        return None;
    }
    let (tag, op, _) = ber_element(rest)?;
    if tag != 0x78 {
        return None;
    }
    let (tag, code, _) = ber_element(op)?;
    (tag == 0x0a && code.len() == 1).then(|| code[0])
}

/// Splits one BER element off `data`: (tag, contents, rest).
fn ber_element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn not_protocol(protocol: &str, detail: impl std::fmt::Display) -> ProbeError {
    ProbeError::new(ErrorKind::StarttlsRefused, format!("{protocol}: {detail}"))
}

async fn send(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), ProbeError> {
    stream.write_all(bytes).await.map_err(io_error)
}

async fn read_exact(
    stream: &mut TcpStream,
    buf: &mut [u8],
    protocol: &str,
) -> Result<(), ProbeError> {
    match stream.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProbeError::new(
            ErrorKind::Reset,
            format!("{protocol}: server closed the connection before the TLS upgrade"),
        )),
        Err(e) => Err(io_error(e)),
    }
}

/// Reads one CRLF- (or LF-) terminated line, without the terminator.
async fn line(stream: &mut TcpStream, protocol: &str) -> Result<String, ProbeError> {
    let mut bytes = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    loop {
        read_exact(stream, &mut byte, protocol).await?;
        if byte[0] == b'\n' {
            break;
        }
        if bytes.len() >= MAX_LINE {
            return Err(not_protocol(protocol, "reply line is too long"));
        }
        bytes.push(byte[0]);
    }
    if bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A reply in the SMTP/FTP style: `250-first`, `250-more`, `250 last`.
struct CodedReply {
    code: u16,
    lines: Vec<String>,
    last: String,
}

async fn reply_with_code(stream: &mut TcpStream, protocol: &str) -> Result<CodedReply, ProbeError> {
    let mut lines = Vec::new();
    for _ in 0..MAX_LINES {
        let l = line(stream, protocol).await?;
        let code = l
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| refused(protocol, format!("not a {protocol} reply: {l:?}")))?;
        let last = l.as_bytes().get(3) != Some(&b'-');
        lines.push(l.clone());
        if last {
            return Ok(CodedReply {
                code,
                lines,
                last: l,
            });
        }
    }
    Err(not_protocol(protocol, "reply has too many lines"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_ldap_result_code() {
        // messageID 1, ExtendedResponse { resultCode success, matchedDN "", diagnostic "" }
        let ok = [
            0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(ldap_result_code(&ok), Some(0));
        let unavailable = [
            0x02, 0x01, 0x01, 0x78, 0x07, 0x0a, 0x01, 0x34, 0x04, 0x00, 0x04, 0x00,
        ];
        assert_eq!(ldap_result_code(&unavailable), Some(52));
        assert_eq!(ldap_result_code(&[0x02, 0x01]), None);
        assert_eq!(ldap_result_code(&[0x04, 0x00]), None);
    }
}
