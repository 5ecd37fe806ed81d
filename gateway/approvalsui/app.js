// The sluice approval page: lists pending requests and sends votes as the
// approver. Data is only ever written with textContent.
//
// The approver is either signed in with single sign-on (mode "sso": the
// session cookie, which the page never sees, and the session's CSRF token
// from /api/session sent back on every vote) or has typed their own
// identity token (mode "token": kept in this tab's sessionStorage and
// sent as a bearer token).
"use strict";
(function () {
  const KEY = "sluice-approver-token";
  const $ = (id) => document.getElementById(id);
  const focusID = decodeURIComponent((location.pathname.match(/^\/approvals\/([^/]+)$/) || [])[1] || "");
  let timer = null;
  let busy = false;
  let drawn = null; // the list on screen, as JSON; null forces a redraw
  let mode = "";     // "sso", "token", or "" when signed out
  let csrf = "";     // the SSO session's CSRF token
  let loginURL = ""; // where SSO starts, when the gateway offers it

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function active() { return mode === "sso" || (mode === "token" && !!token()); }
  function status(msg, isErr) { $("status").textContent = msg; $("status").className = isErr ? "err" : ""; }

  function signedOut(msg) {
    sessionStorage.removeItem(KEY);
    mode = "";
    csrf = "";
    if (timer) { clearInterval(timer); timer = null; }
    drawn = null;
    $("main").hidden = true;
    $("login").hidden = false;
    if (loginURL) {
      const m = location.pathname.match(/^\/approvals(\/[^/]+)?$/);
      $("sso-link").href = loginURL + (m ? "?next=" + encodeURIComponent(location.pathname) : "");
    }
    $("sso").hidden = !loginURL;
    status(msg || "", !!msg);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { "Accept": "application/json" } };
    if (mode === "token") {
      opts.headers["Authorization"] = "Bearer " + token();
      opts.credentials = "omit";
    } else {
      opts.credentials = "same-origin";
      if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf;
    }
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(path, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (resp.status === 401) {
      if (data && data.login) loginURL = data.login;
      signedOut(mode === "sso" ? "Your sign-in has ended; sign in again." : "Token not recognised; sign in again.");
      throw new Error("unauthenticated");
    }
    if (!resp.ok) { throw new Error((data && data.error) || resp.statusText); }
    return data;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function who(p) { return p.name ? p.name + " (" + p.subject + ")" : p.subject; }
  function when(t) { return new Date(t).toLocaleString(); }

  function row(dl, k, v) { dl.append(el("dt", k), el("dd", v)); }

  function card(r) {
    const div = el("div", undefined, "req" + (r.id === focusID ? " focus" : ""));
    div.append(el("h2", r.target.name + " — " + who(r.requester)));
    div.append(el("pre", r.command.text));
    const dl = el("dl");
    row(dl, "Request", r.id);
    row(dl, "Requester", who(r.requester) + (r.requester.email ? " <" + r.requester.email + ">" : ""));
    row(dl, "Target", r.target.name + " (" + r.target.protocol + ")");
    row(dl, "Rule", r.rules.join(", "));
    if (r.reason) row(dl, "Why", r.reason);
    row(dl, "Approvers", r.approvers.join(", ") + " — " + r.approvals + " of " + r.quorum);
    row(dl, "Created", when(r.created_at));
    row(dl, "Expires", when(r.expires_at));
    div.append(dl);
    if (r.can_decide) {
      const reason = el("input");
      reason.type = "text";
      reason.placeholder = "reason (optional)";
      const ok = el("button", "Approve");
      const no = el("button", "Deny");
      ok.type = no.type = "button";
      const vote = (verb) => async () => {
        ok.disabled = no.disabled = true;
        try {
          const res = await api("POST", "/api/approvals/" + encodeURIComponent(r.id) + "/" + verb, { reason: reason.value });
          status("Request " + res.id + ": " + res.state + ".");
        } catch (e) {
          status("Request " + r.id + ": " + e.message, true);
        }
        drawn = null; // the buttons are disabled: redraw even if nothing changed
        refresh();
      };
      ok.addEventListener("click", vote("approve"));
      no.addEventListener("click", vote("deny"));
      const p = el("p");
      p.append(reason, ok, no);
      div.append(p);
    } else {
      div.append(el("p", "You cannot decide this request (you requested it, are not one of its approvers, or have voted)."));
    }
    return div;
  }

  function typing() {
    const active = document.activeElement;
    return !!(active && active.tagName === "INPUT" && active.value && active.closest("#list"));
  }

  // refresh redraws the list when it changed, unless the approver is
  // typing a reason. A redraw replaces every input and button, so an
  // unchanged list is left alone (a selection in the command text, a
  // click on its way, stay), and typing is checked again once the list
  // has arrived: it may have begun while the request was in flight.
  async function refresh() {
    if (busy || !active() || typing()) return;
    busy = true;
    try {
      const list = await api("GET", "/api/approvals?state=pending");
      const json = JSON.stringify(list);
      if (json !== drawn && !typing()) {
        $("list").replaceChildren(...list.map(card));
        $("empty").hidden = list.length > 0;
        drawn = json;
      }
    } catch (e) {
      if (e.message !== "unauthenticated") status("Could not load requests: " + e.message, true);
    } finally {
      busy = false;
    }
  }

  function signedIn(label) {
    $("login").hidden = true;
    $("sso").hidden = true;
    $("main").hidden = false;
    $("whoami").textContent = label || "";
    $("logout").textContent = mode === "sso" ? "Sign out" : "Forget token";
    refresh();
    if (!timer) timer = setInterval(refresh, 2000);
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    mode = "token";
    status("");
    signedIn("");
  });
  $("logout").addEventListener("click", async () => {
    if (mode === "sso") {
      try { await api("POST", "/auth/logout"); } catch (e) { /* signed out either way */ }
    }
    signedOut("");
  });

  // start picks the mode: a token already typed in this tab, else an SSO
  // session (GET /api/session answers 200 with the CSRF token), else the
  // sign-in choices (a 401 that names the SSO login, or only the token).
  async function start() {
    if (token()) { mode = "token"; signedIn(""); return; }
    try {
      const resp = await fetch("/api/session", { headers: { "Accept": "application/json" }, credentials: "same-origin" });
      let data = null;
      try { data = await resp.json(); } catch (e) { data = null; }
      if (data && data.login) loginURL = data.login;
      if (resp.ok && data && data.csrf_token) {
        mode = "sso";
        csrf = data.csrf_token;
        signedIn("Signed in as " + who(data) + ".");
        return;
      }
    } catch (e) { /* no SSO: the token form */ }
    signedOut("");
  }
  start();
})();
