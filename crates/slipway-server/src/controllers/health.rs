pub async fn healthz() -> &'static str {
    "ok"
}
