//! Headless Chromium from Debian, driven through W3C WebDriver (`chromedriver`), for the
//! dashboard's tests in a real browser: pages loaded, elements found, read, clicked and
//! typed into, keys pressed, scripts run in the page (axe-core), screenshots taken.
//!
//! A small client written here: WebDriver is a handful of JSON calls over HTTP on loopback,
//! and the WebDriver crates bring their own HTTP and TLS stacks (one of them ring) for what
//! the tests never need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::http_mock::{Request, forward};

/// The key WebDriver sends for Tab, Enter.
pub const TAB: &str = "\u{E004}";
/// Enter.
pub const ENTER: &str = "\u{E007}";

fn tool(var: &str, name: &str) -> PathBuf {
    std::env::var(var).map(PathBuf::from).unwrap_or_else(|_| {
        let on_path = PathBuf::from(format!("/usr/bin/{name}"));
        assert!(
            on_path.exists(),
            "{name} is missing: run scripts/test.sh (it installs chromium and chromium-driver), or set {var}"
        );
        on_path
    })
}

/// axe-core's script, as `scripts/test.sh` installs it.
pub fn axe_script() -> String {
    let path = std::env::var("CERTPILOT_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            crate::procs::workspace_root().join(".test-env/npm/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "axe-core at {}: {e}; run scripts/test.sh, or set CERTPILOT_AXE",
            path.display()
        )
    })
}

/// How the browser is set up.
#[derive(Clone, Debug)]
pub struct Options {
    /// The viewport (CSS pixels).
    pub size: (u32, u32),
    /// A phone: touch, and the viewport meta tag honoured.
    pub mobile: bool,
    /// Scripts run in pages.
    pub javascript: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            size: (1280, 800),
            mobile: false,
            javascript: true,
        }
    }
}

/// A running browser session, closed (and its driver killed) on drop.
pub struct Chromium {
    driver: Child,
    base: String,
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Chromium {
    /// A headless Chromium as `options` says.
    pub fn start(options: &Options) -> Chromium {
        let port = crate::procs::free_port();
        let driver = Command::new(tool("CERTPILOT_CHROMEDRIVER", "chromedriver"))
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let base = format!("http://127.0.0.1:{port}");
        let profile = tempfile::tempdir().expect("tempdir");
        let (w, h) = options.size;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-gpu".to_owned(),
            "--hide-scrollbars".to_owned(),
            "--force-device-scale-factor=1".to_owned(),
            format!("--window-size={w},{h}"),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        if !options.javascript {
            args.push("--blink-settings=scriptEnabled=false".to_owned());
        }
        let mut chrome = json!({
            "binary": tool("CERTPILOT_CHROMIUM", "chromium"),
            "args": args,
        });
        if options.mobile {
            chrome["mobileEmulation"] = json!({
                "deviceMetrics": {"width": w, "height": h, "pixelRatio": 1.0, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
            });
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": chrome,
            "timeouts": {"pageLoad": 30_000, "script": 30_000, "implicit": 0},
        }}});
        // The driver takes a moment to listen.
        let mut session = None;
        for _ in 0..100 {
            let reply = call(&base, "POST", "/session", Some(&caps));
            if let Some(id) = reply["value"]["sessionId"].as_str() {
                session = Some(id.to_owned());
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut c = Chromium {
            driver,
            base,
            session: session.expect("a Chromium session within 10 s"),
            _profile: profile,
        };
        if !options.mobile {
            c.resize(w, h);
        }
        c
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = call(&self.base, method, &self.at(path), body.as_ref());
        if let Some(error) = reply["value"]["error"].as_str() {
            panic!(
                "WebDriver {method} {path}: {error}: {}",
                reply["value"]["message"]
            );
        }
        reply["value"].clone()
    }

    /// Makes the viewport `w`×`h` (the window's outer size adjusted for it).
    pub fn resize(&mut self, w: u32, h: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": w, "height": h})),
        );
        let inner = self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({
            "script": "return [window.innerWidth, window.innerHeight]", "args": []})),
        );
        if let (Some(iw), Some(ih)) = (inner[0].as_u64(), inner[1].as_u64()) {
            let (dw, dh) = (
                u64::from(w).saturating_sub(iw),
                u64::from(h).saturating_sub(ih),
            );
            if dw > 0 || dh > 0 {
                self.cmd(
                    "POST",
                    "/window/rect",
                    Some(json!({"width": u64::from(w) + dw, "height": u64::from(h) + dh})),
                );
            }
        }
    }

    /// Loads `url` and waits for it.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url})));
    }

    /// The page's URL now.
    pub fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The page's title.
    pub fn title(&self) -> String {
        self.cmd("GET", "/title", None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Every element `css` selects.
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            e.as_object()?
                .values()
                .next()?
                .as_str()
                .map(|s| Element(s.to_owned()))
        })
        .collect()
    }

    /// The element `css` selects; panics naming it when there is none.
    pub fn find(&self, css: &str) -> Element {
        self.find_all(css)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("no {css:?} on {}", self.url()))
    }

    /// Its text as rendered.
    pub fn text(&self, e: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", e.0), None)
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// Its attribute or property `name`.
    pub fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", e.0), None)
            .as_str()
            .map(str::to_owned)
    }

    /// Clicks it.
    pub fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), Some(json!({})));
    }

    /// Types `text` into it.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.cmd(
            "POST",
            &format!("/element/{}/value", e.0),
            Some(json!({"text": text})),
        );
    }

    /// Empties it.
    pub fn clear(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), Some(json!({})));
    }

    /// The focused element.
    pub fn active(&self) -> Element {
        let v = self.cmd("GET", "/element/active", None);
        Element(
            v.as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        )
    }

    /// Presses `keys` as a person would, on whatever has the focus.
    pub fn press(&self, keys: &str) {
        let mut actions = Vec::new();
        for k in keys.chars() {
            actions.push(json!({"type": "keyDown", "value": k.to_string()}));
            actions.push(json!({"type": "keyUp", "value": k.to_string()}));
        }
        self.cmd(
            "POST",
            "/actions",
            Some(json!({"actions": [
            {"type": "key", "id": "keyboard", "actions": actions}]})),
        );
    }

    /// Runs `script` in the page (its `arguments` are `args`); what it returns.
    pub fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    /// axe-core's serious and critical violations on this page (WCAG 2.1 A and AA rules and
    /// best practices), each `{id, impact, help, nodes}`.
    pub fn axe(&self, axe: &str) -> Vec<Value> {
        let script = format!(
            "{axe}\nconst done = arguments[arguments.length - 1];\naxe.run(document, {{runOnly: {{type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}}}}).then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical').map(v => ({{id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map(n => n.html)}})))).catch(e => done([{{id: 'axe-error', help: String(e)}}]));"
        );
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
    }

    /// A PNG of the viewport into `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let b64 = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap_or(""))
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    /// Does `action` (a click, a key) that loads another page, and waits up to 10 s for
    /// the new page: its document is a new element (no script needed, so it works with
    /// JavaScript off too).
    pub fn navigating(&self, action: impl FnOnce(&Chromium)) {
        let before = self.find("html").0;
        action(self);
        let loaded = self.wait_for(Duration::from_secs(10), |b| {
            b.find_all("html").first().is_some_and(|e| e.0 != before)
        });
        assert!(loaded, "no new page after the action, at {}", self.url());
    }

    /// Waits up to `within` for `ready` to hold, reloading the page between looks.
    pub fn wait_for(&self, within: Duration, mut ready: impl FnMut(&Chromium) -> bool) -> bool {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if ready(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        ready(self)
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = call(
            &self.base,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// One WebDriver call: its JSON answer.
fn call(base: &str, method: &str, path: &str, body: Option<&Value>) -> Value {
    let req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers: [(
            "content-type".to_owned(),
            "application/json; charset=utf-8".to_owned(),
        )]
        .into(),
        body: body.map(|b| b.to_string().into_bytes()).unwrap_or_default(),
    };
    let reply = match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(|| forward(base, &req)),
        Err(_) => forward(base, &req),
    };
    serde_json::from_str(&reply.body).unwrap_or(Value::Null)
}
