//! Rule: secrets never print. `voxbridge serve --check` shows the whole
//! effective config, with every key, token, password and the bot URL's
//! credentials redacted.

use std::process::Command;

#[test]
fn serve_check_shows_the_config_without_its_secrets() {
    let secrets = [
        (
            "VOXBRIDGE_ADMIN_KEY",
            "admin-key-s3cret-0123456789",
            "admin-key-s3cret",
        ),
        (
            "VOXBRIDGE_JWT_HS256_SECRET",
            "jwt-s3cret-0123456789",
            "jwt-s3cret",
        ),
        (
            "VOXBRIDGE_MEDIA_API_TOKEN",
            "media-t0ken-0123456789",
            "media-t0ken",
        ),
        (
            "VOXBRIDGE_STORE_URL",
            "postgres://app:pg-passw0rd@db.internal/voxbridge",
            "pg-passw0rd",
        ),
        (
            "VOXBRIDGE_BOT_URL",
            "wss://bot.example.com/ws?token=b0t-t0ken",
            "b0t-t0ken",
        ),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_voxbridge"));
    cmd.args(["serve", "--check"]);
    for (k, v, _) in &secrets {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("voxbridge serve --check runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for (k, _, secret) in &secrets {
        assert!(!text.contains(secret), "{k} printed: {text}");
    }
    assert!(text.contains("<redacted>"), "{text}");
    assert!(
        text.contains("db.internal/voxbridge"),
        "where the store is stays visible: {text}"
    );
    assert!(text.contains("bot.example.com/ws"), "{text}");
}
