//! The script an instance runs (SSM's `AWS-RunShellScript`, under `sh`): it reads the
//! certificate and key from Secrets Manager with the instance's role, lays them out as the
//! `files` kind does, switches `DIR` with one rename, reloads, and prints what it did.
//!
//! ```text
//! DIR            -> DIR.versions/<fingerprint[..16]>   (a relative symlink)
//! DIR.versions/  mode 0700
//!     3f2a9c0d1e2b4a5f/   cert.pem chain.pem fullchain.pem privkey.pem (0600)
//!     before-certpilot/   what DIR held when certpilot took it over
//! ```
//!
//! A version directory is written under a temporary name and renamed, so it is whole or
//! absent; `DIR` is replaced by renaming a new symlink over it (`mv -T`). Only the version
//! installed and the one it replaced are kept (each holds a private key). A real directory
//! at `DIR` is moved aside to `before-certpilot` first. Exit codes: 3 the secret holds no
//! certificate and key, 4 the reload failed (the files stay switched; certpilot's proof by
//! handshake decides, and a rollback switches back), anything else the shell's.

/// A shell word: single-quoted, each `'` closed, escaped and reopened.
pub(crate) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r#"'\''"#))
}

/// What one run installs.
pub(crate) struct Install<'a> {
    /// The certificate's id (for the output).
    pub id: &'a str,
    /// The leaf's fingerprint; its first 16 hex digits name the version.
    pub fingerprint: &'a str,
    /// The directory the server reads.
    pub dir: &'a str,
    /// The secret (id) and version holding the chain and key.
    pub secret: &'a str,
    pub secret_version: &'a str,
    /// The secret's region.
    pub region: &'a str,
    /// The reload command, when there is one.
    pub reload: Option<&'a str>,
}

/// How long the reload may take on the instance.
const RELOAD_TIMEOUT_SECS: u32 = 120;

/// The script for `install`.
pub(crate) fn script(install: &Install<'_>) -> String {
    let version = &install.fingerprint[..install.fingerprint.len().min(16)];
    let reload = match install.reload {
        Some(command) => format!(
            r#"if ! timeout {RELOAD_TIMEOUT_SECS} sh -c {command}; then
  echo "certpilot: the reload failed: "{shown} >&2
  exit 4
fi
echo "certpilot: reloaded"
"#,
            command = quote(command),
            shown = quote(command),
        ),
        None => String::new(),
    };
    format!(
        r#"#!/bin/sh
# certpilot: install {id} ({version}) in {dir}
set -eu
umask 077
DIR={dir_q}
VERSION={version_q}
VERSIONS="$DIR.versions"
mkdir -p "$VERSIONS"
chmod 700 "$VERSIONS"
if [ ! -d "$VERSIONS/$VERSION" ]; then
  NEW="$(mktemp -d "$VERSIONS/.new.XXXXXX")"
  trap 'rm -rf "$NEW"' EXIT
  aws secretsmanager get-secret-value --region {region} --secret-id {secret} --version-id {secret_version} --query SecretString --output text > "$NEW/bundle.pem"
  sed -n '/-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/p' "$NEW/bundle.pem" > "$NEW/fullchain.pem"
  sed -n '/-----BEGIN [A-Z ]*PRIVATE KEY-----/,/-----END [A-Z ]*PRIVATE KEY-----/p' "$NEW/bundle.pem" > "$NEW/privkey.pem"
  rm -f "$NEW/bundle.pem"
  awk 'NR==1,/-----END CERTIFICATE-----/' "$NEW/fullchain.pem" > "$NEW/cert.pem"
  awk 'rest; /-----END CERTIFICATE-----/ && !rest {{rest=1}}' "$NEW/fullchain.pem" > "$NEW/chain.pem"
  if [ ! -s "$NEW/cert.pem" ] || [ ! -s "$NEW/privkey.pem" ]; then
    echo "certpilot: secret "{secret}" version "{secret_version}" holds no certificate and key" >&2
    exit 3
  fi
  chmod 600 "$NEW"/*.pem
  mv "$NEW" "$VERSIONS/$VERSION"
  trap - EXIT
fi
PREVIOUS=""
if [ -L "$DIR" ]; then
  PREVIOUS="$(basename "$(readlink "$DIR")")"
elif [ -e "$DIR" ]; then
  rm -rf "$VERSIONS/before-certpilot"
  mv "$DIR" "$VERSIONS/before-certpilot"
  PREVIOUS=before-certpilot
fi
ln -s "$(basename "$VERSIONS")/$VERSION" "$DIR.certpilot-new"
mv -T "$DIR.certpilot-new" "$DIR"
for old in "$VERSIONS"/*; do
  name="$(basename "$old")"
  if [ "$name" != "$VERSION" ] && [ "$name" != "$PREVIOUS" ] && [ "$name" != before-certpilot ]; then
    rm -rf "$old"
  fi
done
echo "certpilot: $DIR -> $VERSION (was ${{PREVIOUS:-nothing}})"
{reload}"#,
        id = install.id.replace('\n', " "),
        dir = install.dir.replace('\n', " "),
        dir_q = quote(install.dir),
        version_q = quote(version),
        region = quote(install.region),
        secret = quote(install.secret),
        secret_version = quote(install.secret_version),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_so_the_shell_takes_them_as_they_are() {
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's $HOME"), r#"'it'\''s $HOME'"#);
        let s = script(&Install {
            id: "shop",
            fingerprint: "00112233445566778899",
            dir: "/etc/ssl/shop's; rm -rf /",
            secret: "certpilot-deploy/shop",
            secret_version: "v1",
            region: "eu-west-1",
            reload: Some("systemctl reload nginx"),
        });
        assert!(s.contains(r#"DIR='/etc/ssl/shop'\''s; rm -rf /'"#), "{s}");
        assert!(s.contains("VERSION='0011223344556677'"), "{s}");
        assert!(
            s.contains("timeout 120 sh -c 'systemctl reload nginx'"),
            "{s}"
        );
        assert!(!s.contains("PRIVATE KEY-----\n"), "no key in the script");
    }
}
