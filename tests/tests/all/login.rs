//! Joining an Arkitekt deployment against the local server playing the platform: redeem →
//! claim → token → register → serve; token renewal while serving (lifetimes of seconds, a
//! forced reconnect); refused tokens renewed on GraphQL and REGISTER; a revoked client
//! claimed again; refusals explained; the cached login reused on restart (and not for another
//! deployment or manifest); `rekuest-host login` with the auto-approved device code.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use rekuest_host::agent::{AgentConfig, Credentials, GraphqlClient};
use rekuest_host::devserver::{DevServer, DevServerConfig, PlatformConfig};
use rekuest_host::login::{Grant, LoginError, LoginSettings, Manifest, Session, cache};
use rekuest_host::tls::ClientTls;

use crate::serve_support::{
    Serving, bounded, components, fast_server, kinds, return0, run, until, yields,
};

const REDEEM: &str = "the-redeem-token-4711";

fn platform_server(token_lifetime: Duration) -> DevServerConfig {
    DevServerConfig {
        platform: PlatformConfig {
            redeem_tokens: Some(vec![REDEEM.to_string()]),
            token_lifetime,
            ..PlatformConfig::default()
        },
        ..fast_server()
    }
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "rekuest-login-{what}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn manifest(version: &str) -> Manifest {
    Manifest::new(
        None,
        Some(version.into()),
        None,
        Vec::new(),
        "test-node".into(),
    )
    .expect("manifest")
}

fn settings(url: &str, grant: Grant, cache_file: &Path) -> LoginSettings {
    LoginSettings {
        url: url.to_string(),
        manifest: manifest("1"),
        grant,
        cache_file: Some(cache_file.to_path_buf()),
        tls: ClientTls::new(&[]).expect("tls"),
    }
}

async fn log_in(url: &str, grant: Grant, cache_file: &Path) -> Result<Session, LoginError> {
    bounded("login", Session::open(settings(url, grant, cache_file))).await
}

/// An agent config for a logged-in session, reconnecting quickly.
async fn agent_config(session: Session) -> AgentConfig {
    let endpoints = bounded("alias choice", session.rekuest_endpoints())
        .await
        .expect("rekuest endpoints");
    let mut config = crate::serve_support::fast_agent(endpoints.base.as_str());
    config.endpoints = endpoints;
    config.credentials = Credentials::deployment(session);
    config
}

async fn add(server: &DevServer, a: i64, b: i64) {
    let events = run(server, "add", json!({"a": a, "b": b})).await;
    assert_eq!(kinds(&events).last(), Some(&"COMPLETED"), "{events:?}");
    assert_eq!(yields(&events), [return0(json!(a + b))]);
}

fn cached(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("cache file")).expect("json")
}

/// The local platform with tokens living `token_lifetime`.
async fn platform(token_lifetime: Duration) -> DevServer {
    DevServer::start(platform_server(token_lifetime))
        .await
        .expect("server")
}

/// A login with the redeem token, kept in a fresh `login.json` named after `what`.
async fn redeemed(server: &DevServer, what: &str) -> (Session, PathBuf) {
    let cache_file = temp_dir(what).join("login.json");
    let session = log_in(&server.url(), Grant::Redeem(REDEEM.into()), &cache_file)
        .await
        .expect("logged in");
    (session, cache_file)
}

/// Serves `math` with `config` as the server's (only) client; returns it once connected.
async fn serve_connected(server: &DevServer, config: AgentConfig) -> (Serving, String) {
    let serving = Serving::start(config, components(&["math"]).await).await;
    let client = server.clients()[0].clone();
    until("the agent to connect", || server.is_connected(&client)).await;
    (serving, client)
}

/// Cuts `client`'s connection and waits for it to register and connect again.
async fn reconnected(server: &DevServer, client: &str) {
    assert!(server.cut(client));
    until("the agent to register again", || {
        server.registrations() >= 2
    })
    .await;
    until("the agent to connect again", || server.is_connected(client)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeem_claim_token_register_and_serve() {
    let server = platform(Duration::from_secs(3600)).await;
    let (session, cache_file) = redeemed(&server, "serve").await;
    let credentials = Credentials::deployment(session);
    assert!(!format!("{credentials:?}").contains("lok-"));
    let config = {
        let mut config = crate::serve_support::fast_agent(&server.url());
        config.credentials = credentials.clone();
        config
    };
    let (serving, client) = serve_connected(&server, config).await;
    assert_eq!(server.clients(), std::slice::from_ref(&client));
    add(&server, 2, 3).await;
    let counts = server.platform_counts();
    assert_eq!((counts.redeems, counts.claims), (1, 1));
    assert!(counts.tokens >= 1);
    // The claim is kept, for the owner only; the services of the claim are offered.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&cache_file)
            .expect("cache")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(cached(&cache_file)["config"]["auth"]["client_id"], client);
    let services = credentials.services();
    assert_eq!(services[0].key, "rekuest");
    assert_eq!(
        services[0].base_urls[0].as_str(),
        format!("{}/", server.url())
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_renewed_while_serving_across_a_forced_reconnect() {
    let lifetime = Duration::from_secs(2);
    let server = platform(lifetime).await;
    let (session, _) = redeemed(&server, "renew").await;
    let (serving, client) = serve_connected(&server, agent_config(session).await).await;
    let first_tokens = server.platform_counts().tokens;
    // Tasks keep completing while the token the socket registered with expires.
    let started = tokio::time::Instant::now();
    let mut n = 0;
    while started.elapsed() < lifetime * 2 {
        add(&server, n, 1).await;
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A forced reconnect registers with a current token, and registration is checked again
    // over GraphQL with one.
    reconnected(&server, &client).await;
    add(&server, 40, 2).await;
    assert!(
        server.platform_counts().tokens > first_tokens,
        "no new token was fetched"
    );
    assert!(
        !server.close_codes().contains(&3003),
        "an expired token was sent: {:?}",
        server.close_codes()
    );
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_are_renewed_on_graphql_and_register() {
    let server = platform(Duration::from_secs(3600)).await;
    let (session, _) = redeemed(&server, "refused").await;
    let config = agent_config(session).await;
    let credentials = config.credentials.clone();
    let graphql_url = config.endpoints.graphql.clone();
    let (serving, client) = serve_connected(&server, config).await;
    // The server forgets every token (they look fresh to the agent): GraphQL answers
    // UNAUTHENTICATED, REGISTER 3003; both are answered with a renewed token.
    server.expire_tokens();
    let tls = ClientTls::new(&[]).expect("tls");
    let graphql = GraphqlClient::new(graphql_url, credentials.clone(), &tls).expect("client");
    let agent = bounded("ensureAgent", graphql.ensure("test-agent"))
        .await
        .expect("a renewed token is accepted");
    assert!(agent.connected);
    server.expire_tokens();
    reconnected(&server, &client).await;
    assert!(
        server.close_codes().contains(&3003),
        "{:?}",
        server.close_codes()
    );
    add(&server, 1, 1).await;
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_is_claimed_again() {
    let server = platform(Duration::from_secs(3600)).await;
    let (session, cache_file) = redeemed(&server, "revoked").await;
    let (serving, client) = serve_connected(&server, agent_config(session).await).await;
    let old_secret = cached(&cache_file)["config"]["auth"]["client_secret"].clone();
    assert!(server.revoke_client(&client));
    reconnected(&server, &client).await;
    add(&server, 20, 22).await;
    assert_eq!(server.platform_counts().claims, 2, "claimed once more");
    assert_eq!(server.platform_counts().redeems, 1, "not redeemed again");
    let new_secret = cached(&cache_file)["config"]["auth"]["client_secret"].clone();
    assert_ne!(old_secret, new_secret, "the cache keeps the new claim");
    serving.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_explained() {
    let server = platform(Duration::from_secs(3600)).await;
    let dir = temp_dir("refusals");
    // An invalid redeem token: refused, said so, nothing kept, the token not repeated.
    let cache_file = dir.join("bad.json");
    let error = log_in(
        &server.url(),
        Grant::Redeem("not-the-token-0815".into()),
        &cache_file,
    )
    .await
    .expect_err("refused");
    assert!(
        matches!(error, LoginError::RedeemRefused { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains("Invalid redeem token") && text.contains("admin"),
        "{text}"
    );
    assert!(!text.contains("not-the-token-0815"), "{text}");
    assert!(!cache_file.exists());
    // The redeem token used before with another manifest.
    log_in(
        &server.url(),
        Grant::Redeem(REDEEM.into()),
        &dir.join("v1.json"),
    )
    .await
    .expect("first redeem");
    let mut changed = settings(
        &server.url(),
        Grant::Redeem(REDEEM.into()),
        &dir.join("v2.json"),
    );
    changed.manifest = manifest("2");
    let error = bounded("login", Session::open(changed))
        .await
        .expect_err("manifest changed");
    assert!(error.to_string().contains("different manifest"), "{error}");
    // No login at all.
    let error = log_in(&server.url(), Grant::CachedOnly, &dir.join("none.json"))
        .await
        .expect_err("not logged in");
    assert!(error.to_string().contains("rekuest-host login"), "{error}");
    // Not an Arkitekt deployment (no fakts document there).
    let error = log_in(
        &format!("{}/some/service", server.url()),
        Grant::Redeem(REDEEM.into()),
        &dir.join("x.json"),
    )
    .await
    .expect_err("not arkitekt");
    assert!(matches!(error, LoginError::NotArkitekt { .. }), "{error:?}");
    assert!(
        error.to_string().contains("not an Arkitekt deployment"),
        "{error}"
    );
    // Unreachable.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
        listener.local_addr().expect("addr")
    };
    let error = log_in(
        &format!("http://{closed}"),
        Grant::Redeem(REDEEM.into()),
        &dir.join("y.json"),
    )
    .await
    .expect_err("unreachable");
    assert!(error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("cannot reach"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reuses_the_cached_login_without_redeeming() {
    let server = platform(Duration::from_secs(3600)).await;
    let cache_file = temp_dir("restart").join("login.json");
    let first = log_in(&server.url(), Grant::Redeem(REDEEM.into()), &cache_file)
        .await
        .expect("logged in");
    bounded("token", first.current_token())
        .await
        .expect("token");
    drop(first);
    let counts = server.platform_counts();
    assert_eq!((counts.redeems, counts.claims), (1, 1));
    // The next process: the same redeem token is given, but the cache is used.
    let second = log_in(&server.url(), Grant::Redeem(REDEEM.into()), &cache_file)
        .await
        .expect("cached login");
    let (serving, _) = serve_connected(&server, agent_config(second).await).await;
    add(&server, 5, 5).await;
    let counts = server.platform_counts();
    assert_eq!(
        (counts.redeems, counts.claims),
        (1, 1),
        "no redeem or claim on restart"
    );
    serving.shutdown().await.expect("clean shutdown");
    // The cache is not used for another deployment.
    let other = platform(Duration::from_secs(3600)).await;
    let error = log_in(&other.url(), Grant::CachedOnly, &cache_file)
        .await
        .expect_err("not for another deployment");
    assert!(matches!(error, LoginError::NotLoggedIn { .. }), "{error:?}");
    // ... nor for another manifest.
    let mut changed = settings(&server.url(), Grant::CachedOnly, &cache_file);
    changed.manifest = manifest("2");
    let error = bounded("login", Session::open(changed))
        .await
        .expect_err("not for another manifest");
    assert!(matches!(error, LoginError::NotLoggedIn { .. }), "{error:?}");
    // Forgetting it.
    assert!(cache::forget(&cache_file).expect("forgot"));
    assert!(!cache_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_with_an_auto_approved_device_code() {
    let server = platform(Duration::from_secs(3600)).await;
    let cache_file = temp_dir("device").join("login.json");
    let binary = rekuest_host_tests::host_binary();
    let (url, file) = (server.url(), cache_file.clone());
    let output = bounded(
        "rekuest-host login",
        tokio::task::spawn_blocking(move || {
            Command::new(binary)
                .args(["login", &url, "--login-cache"])
                .arg(&file)
                .output()
                .expect("runs")
        }),
    )
    .await
    .expect("joined");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("/configure/") && stderr.contains("approve the code"),
        "{stderr}"
    );
    assert!(stderr.contains("logged in to"), "{stderr}");
    let counts = server.platform_counts();
    assert_eq!((counts.device_codes, counts.redeems), (1, 0));
    let client = server.clients()[0].clone();
    assert_eq!(cached(&cache_file)["config"]["auth"]["client_id"], client);
    // `run` with the same cache serves as the approved client (the same manifest as `login`,
    // node id included, so the cache is reused).
    let state_dir = cache_file.parent().map(Path::to_path_buf);
    let manifest = Manifest::new(
        None,
        None,
        None,
        Vec::new(),
        rekuest_host::login::manifest::node_id(state_dir.as_deref()),
    )
    .expect("manifest");
    let session = bounded(
        "cached login",
        Session::open(LoginSettings {
            url: server.url(),
            manifest,
            grant: Grant::CachedOnly,
            cache_file: Some(cache_file.clone()),
            tls: ClientTls::new(&[]).expect("tls"),
        }),
    )
    .await
    .expect("the login is kept");
    let (serving, served_as) = serve_connected(&server, agent_config(session).await).await;
    assert_eq!(served_as, client);
    add(&server, 3, 4).await;
    serving.shutdown().await.expect("clean shutdown");
}
