//! An HTTP endpoint on loopback that keeps every body posted to it: an SNS subscriber.

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::runtime_api::read_request;

#[derive(Clone)]
pub struct HttpSink {
    bodies: Arc<Mutex<Vec<String>>>,
    pub url: String,
}

impl HttpSink {
    pub fn start() -> HttpSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let sink = HttpSink { bodies: Arc::default(), url };
        let bodies = sink.bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let bodies = bodies.clone();
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    while let Some((_, _, body)) = read_request(&mut reader) {
                        bodies.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                        let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
                        if writer.write_all(reply).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        sink
    }

    /// The bodies received so far.
    pub fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until at least `n` bodies arrived, then returns them all.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let bodies = self.bodies();
            if bodies.len() >= n || Instant::now() > deadline {
                return bodies;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
