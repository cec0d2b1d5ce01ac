//! A Lambda Runtime API on loopback, enough to drive the real function binary: it hands out
//! queued events on `GET /2018-06-01/runtime/invocation/next` and records what the function
//! posts to `.../invocation/{id}/response` and `.../error`.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the function answered for one event.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    /// `true` for `/response`, `false` for `/error`.
    pub ok: bool,
    pub body: serde_json::Value,
}

#[derive(Default)]
struct State {
    queue: VecDeque<(String, String)>,
    handed_out: usize,
    answers: Vec<Invocation>,
}

/// The emulator; its listener lives as long as the test process.
#[derive(Clone)]
pub struct RuntimeApi {
    state: Arc<(Mutex<State>, Condvar)>,
    pub address: String,
}

impl RuntimeApi {
    pub fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let api = RuntimeApi { state: Arc::default(), address };
        let server = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(stream));
            }
        });
        api
    }

    /// Queues an event; returns its request id.
    pub fn push(&self, event: &str) -> String {
        let (lock, ready) = &*self.state;
        let mut state = lock.lock().unwrap();
        let id = format!("req-{}", state.handed_out + state.queue.len() + 1);
        state.queue.push_back((id.clone(), event.to_string()));
        ready.notify_all();
        id
    }

    /// Waits for the answer to `request_id`.
    pub fn wait_for(&self, request_id: &str, timeout: Duration) -> Invocation {
        let (lock, changed) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut state = lock.lock().unwrap();
        loop {
            if let Some(answer) = state.answers.iter().find(|a| a.request_id == request_id) {
                return answer.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no answer to {request_id} within {timeout:?}");
            state = changed.wait_timeout(state, left).unwrap().0;
        }
    }

    /// How many events the function has taken so far.
    pub fn handed_out(&self) -> usize {
        self.state.0.lock().unwrap().handed_out
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        while let Some((method, path, body)) = read_request(&mut reader) {
            let (status, headers, reply) = self.answer(&method, &path, &body);
            let mut head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", reply.len());
            for (name, value) in headers {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\n");
            if writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(reply.as_bytes())).is_err() {
                return;
            }
        }
    }

    fn answer(&self, method: &str, path: &str, body: &[u8]) -> (&'static str, Vec<(String, String)>, String) {
        let (lock, changed) = &*self.state;
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let mut state = lock.lock().unwrap();
            // Long poll, as the real API does, until an event is queued.
            let (id, event) = loop {
                if let Some(next) = state.queue.pop_front() {
                    break next;
                }
                state = changed.wait(state).unwrap();
            };
            state.handed_out += 1;
            let deadline = std::time::SystemTime::now() + Duration::from_secs(300);
            let deadline_ms =
                deadline.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
            let headers = vec![
                ("Lambda-Runtime-Aws-Request-Id".to_string(), id),
                ("Lambda-Runtime-Deadline-Ms".to_string(), deadline_ms.to_string()),
                (
                    "Lambda-Runtime-Invoked-Function-Arn".to_string(),
                    "arn:aws:lambda:us-east-1:111122223333:function:granttrail".to_string(),
                ),
                (
                    "Lambda-Runtime-Trace-Id".to_string(),
                    "Root=1-00000000-000000000000000000000000".to_string(),
                ),
                ("Content-Type".to_string(), "application/json".to_string()),
            ];
            return ("200 OK", headers, event);
        }
        let parts: Vec<&str> = path.split('/').collect();
        if method == "POST" && parts.len() >= 6 && parts[3] == "invocation" {
            let ok = parts[5] == "response";
            let body = serde_json::from_slice(body)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()));
            let mut state = lock.lock().unwrap();
            state.answers.push(Invocation { request_id: parts[4].to_string(), ok, body });
            changed.notify_all();
            return ("202 Accepted", Vec::new(), "{}".into());
        }
        ("404 Not Found", Vec::new(), String::new())
    }
}

/// One HTTP/1.1 request (method, path, body); `None` when the connection closed.
pub(crate) fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
    let mut length = 0usize;
    let mut chunked = false;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        body.resize(length, 0);
        reader.read_exact(&mut body).ok()?;
    }
    Some((method, path, body))
}
