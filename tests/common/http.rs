//! A real HTTP server on 127.0.0.1 that serves files (with Range requests, as Hugging Face and
//! PyPI do) and misbehaves on demand, for the download tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server does wrong, if anything.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    None,
    /// Close the connection after this many body bytes, on the first request without a Range.
    DropOnceAfter(u64),
    /// Flip the byte at this offset in every response.
    Corrupt(u64),
    /// Send at most this many bytes per 100 ms.
    Throttle(usize),
    /// Ignore Range headers: always 200 and the whole file.
    NoRanges,
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct Hit {
    pub path: String,
    /// The first byte asked for (for `bytes=-N`, the first of the last N).
    pub range_start: Option<u64>,
    pub status: u16,
    /// Body bytes sent.
    pub sent: u64,
}

pub struct Server {
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl Server {
    /// Serves `files` (URL path -> file on disk) with `fault`.
    pub fn start(files: HashMap<String, PathBuf>, fault: Fault) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(Mutex::new(false));
        let files = Arc::new(files);
        let h = hits.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (files, hits, dropped) = (files.clone(), h.clone(), dropped.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &files, fault, &hits, &dropped);
                });
            }
        });
        Server { base, hits }
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn hits_for(&self, file: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| h.path.ends_with(file))
            .collect()
    }
}

fn serve(
    conn: TcpStream,
    files: &HashMap<String, PathBuf>,
    fault: Fault,
    hits: &Mutex<Vec<Hit>>,
    dropped: &Mutex<bool>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range: bytes=") {
            range = v
                .trim()
                .split_once('-')
                .map(|(a, b)| (a.to_string(), b.to_string()));
        }
    }
    if fault == Fault::NoRanges {
        range = None;
    }
    let mut out = conn;
    let Some(file) = files.get(&path) else {
        hits.lock().unwrap().push(Hit {
            path,
            range_start: None,
            status: 404,
            sent: 0,
        });
        out.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        )?;
        return Ok(());
    };
    let total = std::fs::metadata(file)?.len();
    // `bytes=N-`, `bytes=N-M` and `bytes=-N`, as RFC 9110 has them.
    let (start, end) = match &range {
        None => (0, total),
        Some((a, b)) if a.is_empty() => (total - b.parse::<u64>().unwrap_or(0).min(total), total),
        Some((a, b)) => {
            let a = a.parse::<u64>().unwrap_or(0).min(total);
            let b = b
                .parse::<u64>()
                .map(|b| (b + 1).min(total))
                .unwrap_or(total);
            (a, b.max(a))
        }
    };
    let status = if range.is_some() { 206 } else { 200 };
    let range_start = range.is_some().then_some(start);
    let hit = {
        let mut hits = hits.lock().unwrap();
        hits.push(Hit {
            path,
            range_start,
            status,
            sent: 0,
        });
        hits.len() - 1
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n",
        if status == 206 { "Partial Content" } else { "OK" },
        end - start
    );
    if status == 206 {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{total}\r\n",
            end.max(1) - 1
        ));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let mut f = std::fs::File::open(file)?;
    f.seek(SeekFrom::Start(start))?;
    let chunk = match fault {
        Fault::Throttle(n) => n,
        _ => 64 * 1024,
    };
    let mut buf = vec![0u8; chunk];
    let mut pos = start;
    let mut f = f.take(end - start);
    let drop_at = match fault {
        Fault::DropOnceAfter(n) if range_start.is_none() && !*dropped.lock().unwrap() => {
            *dropped.lock().unwrap() = true;
            Some(n)
        }
        _ => None,
    };
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        let mut n = n;
        if let Some(limit) = drop_at {
            if pos + n as u64 >= limit {
                n = (limit - pos) as usize;
                out.write_all(&buf[..n])?;
                out.flush()?;
                // Abrupt close mid-body, as a flaky network would.
                out.shutdown(Shutdown::Both)?;
                return Ok(());
            }
        }
        if let Fault::Corrupt(at) = fault {
            if at >= pos && at < pos + n as u64 {
                buf[(at - pos) as usize] ^= 0x5a;
            }
        }
        out.write_all(&buf[..n])?;
        pos += n as u64;
        hits.lock().unwrap()[hit].sent += n as u64;
        if let Fault::Throttle(_) = fault {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    out.flush()
}
