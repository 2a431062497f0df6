//! The floor under lockstep's read path: a pingora reverse proxy that does nothing but forward
//! every request to one upstream over pooled keep-alive connections, with no classification,
//! journal, headers or metrics. `loadtest/bench.sh` measures it next to lockstep so that the
//! cost of the framework and the cost of lockstep's own work can be told apart.
//!
//! Usage: `bare_proxy LISTEN UPSTREAM THREADS`, e.g. `bare_proxy 127.0.0.1:8080 127.0.0.1:9000 1`.

use std::time::Duration;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Forward {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Forward {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        let mut peer = HttpPeer::new(self.upstream, false, String::new());
        peer.options.idle_timeout = Some(Duration::from_secs(60));
        Ok(Box::new(peer))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, threads] = args.as_slice() else {
        eprintln!("usage: bare_proxy LISTEN UPSTREAM THREADS");
        std::process::exit(2);
    };
    let upstream = upstream.parse().expect("UPSTREAM is an IP:PORT address");
    let threads = threads.parse().expect("THREADS is a number");
    let conf = ServerConf {
        threads,
        // As lockstep runs its workers: one single-threaded runtime per thread.
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(&server.configuration, Forward { upstream });
    service.add_tcp(listen);
    server.add_service(service);
    server.run_forever();
}
