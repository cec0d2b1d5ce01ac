//! Loads a page in headless Chromium through the DevTools protocol and reports what happened:
//! every request the page made, every console message, log entry, exception and dialog, a few
//! facts about its DOM, a PNG screenshot and the size of its printed PDF.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

pub struct PageResult {
    pub page_url: String,
    /// URLs of every request the page sent (Network.requestWillBeSent).
    pub requests: Vec<String>,
    /// Console API calls, exceptions and browser log entries, as text.
    pub console: Vec<String>,
    pub dialogs: Vec<String>,
    /// The result of [`DOM_FACTS`].
    pub dom: Value,
    pub screenshot: Vec<u8>,
    pub pdf_bytes: usize,
}

/// What the test asks the loaded page (evaluated by DevTools, not by the page).
const DOM_FACTS: &str = r#"JSON.stringify({
  timelines: document.querySelectorAll('svg.timeline').length,
  svgs: document.querySelectorAll('svg').length,
  bars: document.querySelectorAll('svg.timeline .grant-bar').length,
  marks: document.querySelectorAll('svg.timeline .use-mark').length,
  images: document.querySelectorAll('img, image, iframe, object, embed').length,
  scripts: document.querySelectorAll('script').length,
  name_as_text: document.body.innerText.includes('<img src=x onerror=alert(1)>'),
  name_escaped_in_markup: document.documentElement.outerHTML.includes('&lt;img src=x onerror=alert(1)&gt;'),
  scroll_width: document.documentElement.scrollWidth,
  title: document.title
})"#;

const DEADLINE: Duration = Duration::from_secs(90);

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Session {
    ws: WebSocket<TcpStream>,
    next_id: u64,
    session: Option<String>,
    events: Vec<Value>,
    started: Instant,
}

impl Session {
    /// Sends a command and waits for its answer, keeping the events that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            message["sessionId"] = json!(s);
        }
        self.ws.send(Message::text(message.to_string())).unwrap();
        loop {
            let m = self.read().unwrap_or_else(|| panic!("no answer to {method} in time"));
            if m["id"] == id {
                assert!(m.get("error").is_none(), "{method} failed: {m}");
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    /// The next message, or None when the deadline passes.
    fn read(&mut self) -> Option<Value> {
        loop {
            if self.started.elapsed() > DEADLINE {
                return None;
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    return Some(Value::Null);
                }
                Err(e) => panic!("DevTools connection: {e}"),
            }
        }
    }

    /// Waits for an event, or until `quiet` passes without any message.
    fn wait_for(&mut self, method: &str, quiet: Duration) -> bool {
        let mut last = Instant::now();
        loop {
            if self.events.iter().any(|e| e["method"] == method) {
                return true;
            }
            match self.read() {
                None => return false,
                Some(Value::Null) if last.elapsed() > quiet => return false,
                Some(Value::Null) => {}
                Some(m) => {
                    last = Instant::now();
                    self.events.push(m);
                }
            }
        }
    }

    /// Collects events until nothing arrives for `quiet`.
    fn settle(&mut self, quiet: Duration) {
        let _ = self.wait_for("(none)", quiet);
    }
}

fn launch(browser: &Path) -> (Browser, String) {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", browser.display()));
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining stderr so Chromium never blocks on it; pass on every line.
        let mut reader = BufReader::new(stderr);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = tx.send(String::from_utf8_lossy(&line).trim().to_string());
            line.clear();
        }
    });
    let browser = Browser { child, _profile: profile };
    let mut seen = Vec::new();
    let url = loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => match line.find("ws://") {
                Some(at) => break line[at..].to_string(),
                None => seen.push(line),
            },
            Err(e) => {
                panic!("Chromium did not print its DevTools address ({e}); it said:\n{}", seen.join("\n"))
            }
        }
    };
    (browser, url)
}

fn connect(url: &str) -> WebSocket<TcpStream> {
    let host = url.trim_start_matches("ws://").split('/').next().unwrap();
    let stream = TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let (ws, _) = tungstenite::client(url, stream).unwrap();
    // Short reads from here on, so that waiting for events can stop when the page is quiet.
    ws.get_ref().set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    ws
}

/// Decodes standard base64 (the DevTools encoding of binary results).
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

/// Loads `page` (a local file) at the given viewport size and reports on it.
pub fn load_page(browser: &Path, page: &Path, (width, height): (u32, u32)) -> PageResult {
    let (_browser, url) = launch(browser);
    let mut s =
        Session { ws: connect(&url), next_id: 0, session: None, events: Vec::new(), started: Instant::now() };
    let target = s.call("Target.createTarget", json!({"url": "about:blank"}));
    let attached = s.call("Target.attachToTarget", json!({"targetId": target["targetId"], "flatten": true}));
    s.session = Some(attached["sessionId"].as_str().unwrap().to_string());
    for domain in ["Page", "Runtime", "Log", "Network"] {
        s.call(&format!("{domain}.enable"), json!({}));
    }
    s.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
    );
    // Only what the report page does counts, not about:blank.
    s.events.clear();
    let page_url = format!("file://{}", page.canonicalize().unwrap().display());
    s.call("Page.navigate", json!({"url": page_url}));
    assert!(s.wait_for("Page.loadEventFired", Duration::from_secs(30)), "the page did not finish loading");
    s.settle(Duration::from_millis(800));

    let dom = s.call("Runtime.evaluate", json!({"expression": DOM_FACTS, "returnByValue": true}));
    let dom: Value = serde_json::from_str(dom["result"]["value"].as_str().unwrap()).unwrap();
    let shot = s.call("Page.captureScreenshot", json!({"format": "png"}));
    let pdf = s.call("Page.printToPDF", json!({"printBackground": true}));
    s.settle(Duration::from_millis(300));

    let mut requests = Vec::new();
    let mut console = Vec::new();
    let mut dialogs = Vec::new();
    for e in &s.events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or_default() {
            "Network.requestWillBeSent" => {
                requests.push(p["request"]["url"].as_str().unwrap_or_default().to_string())
            }
            "Runtime.consoleAPICalled" => console.push(format!("console.{}: {}", p["type"], p["args"])),
            "Runtime.exceptionThrown" => console.push(format!("exception: {}", p["exceptionDetails"])),
            "Log.entryAdded" => {
                let entry = &p["entry"];
                // Verbose entries are Chromium's own chatter; anything louder is the page's.
                if entry["level"] != "verbose" {
                    console.push(format!("log {} {}: {}", entry["level"], entry["source"], entry["text"]));
                }
            }
            "Page.javascriptDialogOpening" => dialogs.push(p["message"].to_string()),
            _ => {}
        }
    }
    PageResult {
        page_url,
        requests,
        console,
        dialogs,
        dom,
        screenshot: base64(shot["data"].as_str().unwrap()),
        pdf_bytes: base64(pdf["data"].as_str().unwrap()).len(),
    }
}
