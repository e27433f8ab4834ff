// The static buildpack's web server: serves the site folder on $PORT as site.json (the
// checked static.json) says. Node's HTTP server is event-driven and its parser is native, and
// the site never changes inside an image, so files are read once and answered from memory.
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");

const site = JSON.parse(fs.readFileSync(path.join(__dirname, "site.json"), "utf8"));
const root = path.resolve("/app", site.root);
const port = Number(process.env.PORT || 5000);

/// Files up to this size are kept in memory once read; larger ones are streamed.
const MEMORY_FILE_LIMIT = 1024 * 1024;
/// Total memory the file cache may hold.
const MEMORY_TOTAL_LIMIT = 64 * 1024 * 1024;

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".htm": "text/html; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/markdown; charset=utf-8",
  ".xml": "application/xml",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".avif": "image/avif",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".ttf": "font/ttf",
  ".otf": "font/otf",
  ".wasm": "application/wasm",
  ".pdf": "application/pdf",
  ".mp4": "video/mp4",
  ".webm": "video/webm",
  ".mp3": "audio/mpeg",
  ".webmanifest": "application/manifest+json",
};

/// `*` matches within one path segment, `**` across segments.
function globRegExp(pattern) {
  let source = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === "*" && pattern[i + 1] === "*") {
      source += ".*";
      i++;
    } else if (c === "*") {
      source += "[^/]*";
    } else {
      source += c.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    }
  }
  return new RegExp("^" + source + "$");
}

const routes = site.routes.map(([pattern, file]) => [globRegExp(pattern), file]);
const headerRules = site.headers.map(([pattern, headers]) => [globRegExp(pattern), headers]);
const redirects = new Map(site.redirects.map(([from, url, status]) => [from, { url, status }]));

const cache = new Map();
let cached = 0;

/// The file at `file` (absolute) as { body | stream, size, etag, type }, or null.
function load(file) {
  if (cache.has(file)) return cache.get(file);
  let stat;
  try {
    stat = fs.statSync(file);
  } catch {
    return null;
  }
  if (!stat.isFile()) return null;
  const entry = {
    file,
    size: stat.size,
    etag: `W/"${stat.size.toString(16)}-${Math.floor(stat.mtimeMs).toString(16)}"`,
    lastModified: stat.mtime.toUTCString(),
    type: TYPES[path.extname(file).toLowerCase()] || "application/octet-stream",
    body: null,
  };
  if (stat.size <= MEMORY_FILE_LIMIT && cached + stat.size <= MEMORY_TOTAL_LIMIT) {
    entry.body = fs.readFileSync(file);
    cached += stat.size;
    cache.set(file, entry);
  }
  return entry;
}

/// The file under root for a URL path, or null when it would leave root.
function resolve(urlPath) {
  const file = path.resolve(root, "." + urlPath);
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

function isDirectory(file) {
  try {
    return fs.statSync(file).isDirectory();
  } catch {
    return false;
  }
}

/// What answers `urlPath`: { entry, status } or { redirect }.
function lookup(urlPath) {
  const file = resolve(urlPath);
  if (file !== null) {
    if (isDirectory(file)) {
      if (!urlPath.endsWith("/")) return { redirect: urlPath + "/", status: 301 };
      const index = load(path.join(file, "index.html"));
      if (index) return { entry: index, status: 200 };
    } else {
      const entry = load(file);
      if (entry) return { entry, status: 200 };
      if (site.clean_urls && path.extname(file) === "") {
        const html = load(file + ".html");
        if (html) return { entry: html, status: 200 };
      }
    }
  }
  for (const [pattern, target] of routes) {
    if (pattern.test(urlPath)) {
      const entry = load(path.resolve(root, target));
      if (entry) return { entry, status: 200 };
    }
  }
  if (site.error_page) {
    const entry = load(path.resolve(root, site.error_page));
    if (entry) return { entry, status: 404 };
  }
  return { entry: null, status: 404 };
}

function handle(req, res) {
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { Allow: "GET, HEAD", "Content-Type": "text/plain; charset=utf-8" });
    res.end("405 Method Not Allowed\n");
    return;
  }
  const raw = (req.url || "/").split("?")[0];
  let urlPath;
  try {
    urlPath = decodeURIComponent(raw);
  } catch {
    urlPath = null;
  }
  if (urlPath === null || !urlPath.startsWith("/") || urlPath.includes("\0")) {
    res.writeHead(400, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("400 Bad Request\n");
    return;
  }
  for (const [pattern, headers] of headerRules) {
    if (pattern.test(urlPath)) {
      for (const [name, value] of headers) res.setHeader(name, value);
    }
  }
  const redirect = redirects.get(urlPath);
  if (redirect) {
    res.writeHead(redirect.status, { Location: redirect.url });
    res.end();
    return;
  }
  const found = lookup(urlPath);
  if (found.redirect) {
    const query = (req.url || "").includes("?") ? "?" + req.url.split("?").slice(1).join("?") : "";
    res.writeHead(found.status, { Location: found.redirect + query });
    res.end();
    return;
  }
  const { entry, status } = found;
  if (!entry) {
    res.writeHead(404, { "Content-Type": "text/plain; charset=utf-8" });
    res.end("404 Not Found\n");
    return;
  }
  if (status === 200 && req.headers["if-none-match"] === entry.etag) {
    res.writeHead(304, { ETag: entry.etag });
    res.end();
    return;
  }
  res.writeHead(status, {
    "Content-Type": entry.type,
    "Content-Length": entry.size,
    ETag: entry.etag,
    "Last-Modified": entry.lastModified,
  });
  if (req.method === "HEAD") {
    res.end();
  } else if (entry.body) {
    res.end(entry.body);
  } else {
    fs.createReadStream(entry.file)
      .on("error", () => res.destroy())
      .pipe(res);
  }
}

const server = http.createServer(handle);
// Longer than the router's idle keep-alive, so the router closes first and never reuses a
// connection this side is closing.
server.keepAliveTimeout = 75 * 1000;
server.headersTimeout = 80 * 1000;
server.listen(port, "0.0.0.0", () => {
  console.log(`static: serving ${root} on port ${port}`);
});
process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  server.closeIdleConnections();
});
