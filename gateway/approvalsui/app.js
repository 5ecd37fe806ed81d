// The sluice approval page: lists pending requests and sends votes as the
// approver. Data is only ever written with textContent.
"use strict";
(function () {
  const KEY = "sluice-approver-token";
  const $ = (id) => document.getElementById(id);
  const focusID = decodeURIComponent((location.pathname.match(/^\/approvals\/([^/]+)$/) || [])[1] || "");
  let timer = null;
  let busy = false;
  let drawn = null; // the list on screen, as JSON; null forces a redraw

  function token() { return sessionStorage.getItem(KEY) || ""; }
  function status(msg, isErr) { $("status").textContent = msg; $("status").className = isErr ? "err" : ""; }

  function signedOut(msg) {
    sessionStorage.removeItem(KEY);
    if (timer) { clearInterval(timer); timer = null; }
    drawn = null;
    $("main").hidden = true;
    $("login").hidden = false;
    status(msg || "", !!msg);
  }

  async function api(method, path, body) {
    const opts = { method, headers: { "Authorization": "Bearer " + token(), "Accept": "application/json" } };
    if (body !== undefined) { opts.headers["Content-Type"] = "application/json"; opts.body = JSON.stringify(body); }
    const resp = await fetch(path, opts);
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    if (resp.status === 401) { signedOut("Token not recognised; sign in again."); throw new Error("unauthenticated"); }
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
    if (busy || !token() || typing()) return;
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

  function signedIn() {
    $("login").hidden = true;
    $("main").hidden = false;
    refresh();
    if (!timer) timer = setInterval(refresh, 2000);
  }

  $("login").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    status("");
    signedIn();
  });
  $("logout").addEventListener("click", () => signedOut(""));
  if (token()) signedIn(); else signedOut("");
})();
