//! NetScaler's NITRO REST API (`/nitro/v1/config/…`): `X-NITRO-USER`/`X-NITRO-PASS` on every
//! request, JSON bodies named by resource, and the `{errorcode, message, severity}` envelope
//! checked on every answer (errorcode 0 is success), reported in NetScaler's words.

use certpilot_core::ports::DeployError;
use reqwest::Method;
use serde_json::{Value, json};

use crate::http::Http;

/// Where certificate files live on the appliance.
pub(crate) const SSL_DIR: &str = "/nsconfig/ssl";

/// One appliance (or HA pair, through its management address).
pub(crate) struct Nitro {
    http: Http,
    base: String,
    user: String,
    password: String,
}

/// A NITRO error: its HTTP status, errorcode and words.
pub(crate) struct NitroError {
    status: u16,
    code: i64,
    error: DeployError,
}

impl From<DeployError> for NitroError {
    fn from(error: DeployError) -> Self {
        NitroError {
            status: 0,
            code: 0,
            error,
        }
    }
}

impl NitroError {
    pub(crate) fn into_deploy(self) -> DeployError {
        self.error
    }
}

impl Nitro {
    pub(crate) fn new(
        base: &str,
        user: String,
        password: String,
        ca_pem: Option<&str>,
    ) -> Result<Self, DeployError> {
        Ok(Nitro {
            http: Http::trusting(ca_pem)?,
            base: base.trim_end_matches('/').to_owned(),
            user,
            password,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, NitroError> {
        let url = format!("{}/nitro/v1/config/{path}", self.base);
        let mut headers = vec![
            ("x-nitro-user", self.user.clone()),
            ("x-nitro-pass", self.password.clone()),
        ];
        if body.is_some() {
            headers.push(("content-type", "application/json".into()));
        }
        let answer = self
            .http
            .send("NetScaler", method.clone(), &url, &headers, body.as_ref())
            .await?;
        let v: Value = serde_json::from_slice(&answer.body).unwrap_or(Value::Null);
        let code = v["errorcode"].as_i64().unwrap_or(0);
        if (200..300).contains(&answer.status) && code == 0 {
            return Ok(v);
        }
        let route = path.split('?').next().unwrap_or(path);
        let words = v["message"].as_str().unwrap_or("no message");
        let what = format!("NetScaler: {method} {route}");
        let message = match answer.status {
            401 | 403 => format!(
                "{what}: the NITRO user is refused; it needs a command policy allowing systemfile, sslcertkey, the vserver binding and save config (NetScaler said: {words}, errorcode {code})"
            ),
            _ => format!(
                "{what}: NetScaler said: {words} (errorcode {code}, HTTP {})",
                answer.status
            ),
        };
        Err(NitroError {
            status: answer.status,
            code,
            error: if answer.status >= 500 && answer.status != 599 {
                DeployError::Unavailable(message)
            } else {
                DeployError::Target(message)
            },
        })
    }

    /// Uploads `content` as `/nsconfig/ssl/NAME` (one already there is kept: the names are
    /// the fingerprint's, so its content is the same).
    pub(crate) async fn upload(&self, name: &str, content: &str) -> Result<(), NitroError> {
        use data_encoding::BASE64;
        let body = json!({"systemfile": {"filename": name, "filelocation": SSL_DIR,
            "filecontent": BASE64.encode(content.as_bytes()), "fileencoding": "BASE64"}});
        match self.call(Method::POST, "systemfile", Some(body)).await {
            Err(e) if e.status == 409 || e.code == 273 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Deletes `/nsconfig/ssl/NAME`; one gone already is no error, one in use stays.
    pub(crate) async fn delete_file(&self, name: &str) -> Result<(), NitroError> {
        let path = format!("systemfile/{name}?args=filelocation:%2Fnsconfig%2Fssl");
        match self.call(Method::DELETE, &path, None).await {
            Err(e) if e.status == 404 || e.status == 409 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// The certificate and key files of certkey `name`, if it exists.
    pub(crate) async fn certkey(&self, name: &str) -> Result<Option<(String, String)>, NitroError> {
        match self
            .call(Method::GET, &format!("sslcertkey/{name}"), None)
            .await
        {
            Ok(v) => {
                let ck = &v["sslcertkey"][0];
                Ok(Some((
                    ck["cert"].as_str().unwrap_or("").to_owned(),
                    ck["key"].as_str().unwrap_or("").to_owned(),
                )))
            }
            Err(e) if e.status == 404 || e.code == 258 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates certkey `name` from two uploaded files.
    pub(crate) async fn add_certkey(
        &self,
        name: &str,
        cert: &str,
        key: &str,
    ) -> Result<(), NitroError> {
        let body = json!({"sslcertkey": {"certkey": name, "cert": cert, "key": key}});
        self.call(Method::POST, "sslcertkey", Some(body))
            .await
            .map(|_| ())
    }

    /// Points certkey `name` at two uploaded files: every binding keeps it. `nodomaincheck`
    /// lets a certificate with other names replace it.
    pub(crate) async fn update_certkey(
        &self,
        name: &str,
        cert: &str,
        key: &str,
    ) -> Result<(), NitroError> {
        let body = json!({"sslcertkey": {"certkey": name, "cert": cert, "key": key, "nodomaincheck": true}});
        self.call(Method::POST, "sslcertkey?action=update", Some(body))
            .await
            .map(|_| ())
    }

    /// Binds certkey `name` to SSL virtual server `vserver`.
    pub(crate) async fn bind(&self, vserver: &str, name: &str) -> Result<(), NitroError> {
        let body =
            json!({"sslvserver_sslcertkey_binding": {"vservername": vserver, "certkeyname": name}});
        self.call(Method::POST, "sslvserver_sslcertkey_binding", Some(body))
            .await
            .map(|_| ())
    }

    /// Saves the running configuration, so a restart keeps the change.
    pub(crate) async fn save(&self) -> Result<(), NitroError> {
        self.call(
            Method::POST,
            "nsconfig?action=save",
            Some(json!({"nsconfig": {}})),
        )
        .await
        .map(|_| ())
    }
}
