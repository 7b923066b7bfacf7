/**
 * The web UI's fixed documents: the app shell (with its import map, hashed into the CSP),
 * the login page and the style sheet. No inline script but the import map; no inline style.
 */
const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!)

export const INDEX_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>rmesh</title><link rel="stylesheet" href="/app/style.css">
<script type="importmap">{"imports":{"preact":"/vendor/preact.mjs","preact/hooks":"/vendor/hooks.mjs","htm":"/vendor/htm.mjs"}}</script>
<script type="module" src="/app/main.js"></script></head>
<body><div id="app"><p>Loading…</p></div></body></html>`

export const LOGIN_HTML = (message: string) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>rmesh — log in</title><link rel="stylesheet" href="/app/style.css"></head>
<body><main class="login"><h1>rmesh</h1>${message ? `<p role="alert">${esc(message)}</p>` : ''}
<p>Open the one-time link that <code>rmesh web open</code> prints on this node, or log in with the
password set by <code>rmesh web password</code>.</p>
<form id="login"><label for="pw">Password</label> <input id="pw" name="password" type="password" autocomplete="current-password" required>
<button type="submit">Log in</button></form>
<script type="module" src="/app/main.js"></script></main></body></html>`

export const STYLE_CSS = `
:root{color-scheme:light dark;font:14px/1.4 system-ui,sans-serif}
body{margin:0}header{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#223;color:#fff}
header a{color:#cde}header a[aria-current=page]{color:#fff;font-weight:bold}
main{padding:1em}table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.25em .5em;border-bottom:1px solid #8884}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(120px,1fr));gap:.5em}
.frame{border:1px solid #8886;padding:.25em;font-size:12px;background:none;color:inherit;text-align:left}
.frame img{width:100%;height:80px;object-fit:contain;background:#0002}
.frame .ph{height:80px;background:#8882;display:flex;align-items:center;justify-content:center}
.done{border-color:#3a3}.failed{border-color:#c33}.rendering{border-color:#c93}
.viewer{position:fixed;inset:0;background:#000d;display:flex;flex-direction:column;align-items:center;justify-content:center}
.viewer img{max-width:95vw;max-height:85vh}.error{color:#c33}
form.submit label{display:block;margin:.5em 0}pre{white-space:pre-wrap;max-height:20em;overflow:auto;background:#8881}
.login{max-width:30em;margin:3em auto}
.tag{display:inline-block;padding:0 .4em;border-radius:.6em;background:#58a3;font-size:12px}
.filters{display:flex;gap:1.5em}caption{text-align:left;font-weight:bold;padding:.5em 0}
video.preview{width:min(640px,100%);max-height:50vh;background:#000}
`
