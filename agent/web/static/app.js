// Whisker's page script. The page works without it (plain forms and
// links); with it, actions do not reload the page, the page refreshes
// itself when the camera sees something or names change, the inbox takes
// keys, and photos can be dropped onto the upload form. Listeners sit on
// the document, since the page's content is replaced at every refresh.
"use strict";
(() => {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const page = document.body.dataset.page;
  const status = document.getElementById("status");

  function say(msg, bad) {
    status.textContent = msg;
    status.hidden = !msg;
    status.classList.toggle("err", !!bad);
  }

  // refresh fetches the page again and puts its content in place,
  // keeping the focused visit, sample or field focused.
  let refreshing = null;
  function refresh() {
    if (!refreshing) {
      refreshing = load().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }
  async function load() {
    const res = await fetch(location.href, { headers: { Accept: "text/html" } });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    const main = document.getElementById("main");
    const fresh = doc.getElementById("main");
    if (!fresh) return;
    const active = document.activeElement;
    const holder = active && active.closest ? active.closest("[id]") : null;
    const keep = holder && holder !== main ? holder.id : "";
    main.innerHTML = fresh.innerHTML;
    const nav = document.querySelector("header nav");
    const freshNav = doc.querySelector("header nav");
    if (nav && freshNav) nav.innerHTML = freshNav.innerHTML;
    const again = keep && document.getElementById(keep);
    if (again) again.focus({ preventScroll: true });
  }

  // Forms post with fetch; the answer is shown and the page refreshed.
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    // Attributes, not properties: a field named "action" would shadow them.
    const method = (form.getAttribute("method") || "get").toLowerCase();
    if (form.hasAttribute("data-plain") || method !== "post") return;
    e.preventDefault();
    const data = new FormData(form, e.submitter);
    const multipart = form.getAttribute("enctype") === "multipart/form-data";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    let out;
    try {
      const res = await fetch(form.getAttribute("action"), {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        body: multipart ? data : new URLSearchParams(data),
      });
      out = await res.json().catch(() => ({ ok: false, message: res.status + " " + res.statusText }));
    } catch (err) {
      out = { ok: false, message: "Not sent: " + err.message + ". Try again." };
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
    await refresh();
    say(out.message, !out.ok);
  });

  // The page refreshes itself when the inbox changes, unless someone is
  // in the middle of choosing or typing.
  function busy() {
    const a = document.activeElement;
    if (a && (a.tagName === "INPUT" || a.tagName === "SELECT") && a.type !== "checkbox") return true;
    return !!document.querySelector("#main input[type=checkbox]:checked, #main details[open]");
  }
  if (window.EventSource && page !== "login") {
    let timer = null;
    const events = new EventSource("/events");
    events.addEventListener("change", () => {
      if (timer) return;
      timer = setTimeout(() => {
        timer = null;
        if (document.hidden) return;
        if (page === "live" || (page === "inbox" && !busy()) || (page === "health" && document.getElementById("eval"))) refresh();
      }, page === "live" ? 100 : 150);
    });
  }
  if (page === "health") {
    setInterval(() => {
      if (document.getElementById("eval") && !document.hidden) refresh();
    }, 2000);
  }

  // Live: the latest frame, once a second.
  if (page === "live") {
    setInterval(() => {
      const img = document.getElementById("live-frame");
      if (img && !document.hidden) img.src = "/live/frame.jpg?t=" + Date.now();
    }, 1000);
  }

  // Inbox keys: 1-9 a pet, 0 neither, x not my pet, n a new name (on
  // keyup, so that the key itself is not typed into the field), j/k (or
  // arrows) the next or previous visit, Escape back from the field.
  function typing(t) {
    return t.tagName === "INPUT" ? t.type !== "checkbox" : t.tagName === "SELECT" || t.tagName === "TEXTAREA";
  }
  if (page === "inbox") {
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target;
      if (typing(t)) {
        if (e.key === "Escape" && t.closest(".visit")) t.closest(".visit").focus();
        return;
      }
      const visits = [...document.querySelectorAll(".visit")];
      if (!visits.length) return;
      let cur = t.closest ? t.closest(".visit") : null;
      const i = cur ? visits.indexOf(cur) : -1;
      if (e.key === "j" || e.key === "ArrowDown") {
        visits[Math.min(i + 1, visits.length - 1)].focus();
        e.preventDefault();
        return;
      }
      if (e.key === "k" || e.key === "ArrowUp") {
        visits[Math.max(i - 1, 0)].focus();
        e.preventDefault();
        return;
      }
      if (e.key === "n") {
        e.preventDefault();
        return;
      }
      cur = cur || visits[0];
      const b = cur.querySelector('button[data-key="' + CSS.escape(e.key) + '"]');
      if (b) {
        cur.focus();
        b.click();
        e.preventDefault();
      }
    });
    document.addEventListener("keyup", (e) => {
      if (e.key !== "n" || e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const cur = (e.target.closest && e.target.closest(".visit")) || document.querySelector(".visit");
      const field = cur ? cur.querySelector("input[name=name]") : null;
      if (field) field.focus();
    });
  }

  // Pets: drop photos onto the upload form. Each is sent on its own, with
  // the fields first (the server reads them before any photo).
  if (page === "pets") {
    const zoneOf = (e) => (e.target.closest ? e.target.closest("#upload") : null);
    for (const type of ["dragenter", "dragover"]) {
      document.addEventListener(type, (e) => {
        const z = zoneOf(e);
        if (z) {
          e.preventDefault();
          z.classList.add("over");
        }
      });
    }
    document.addEventListener("dragleave", (e) => {
      const z = zoneOf(e);
      if (z) z.classList.remove("over");
    });
    document.addEventListener("drop", async (e) => {
      const upload = zoneOf(e);
      if (!upload) return;
      e.preventDefault();
      upload.classList.remove("over");
      const label = upload.querySelector("input[name=label]");
      const name = label.value.trim();
      if (!name) {
        say("Say whose photos these are first.", true);
        label.focus();
        return;
      }
      const files = [...e.dataTransfer.files].filter((f) => /^image\/(jpeg|png)$/.test(f.type));
      if (!files.length) {
        say("Drop JPEG or PNG photos.", true);
        return;
      }
      const base = upload.querySelector("input[name=request_id]").value + "-" + Date.now();
      let ok = 0;
      const errors = [];
      for (const [i, f] of files.entries()) {
        say("Uploading " + (i + 1) + " of " + files.length + "…");
        const fd = new FormData();
        fd.append("csrf", csrf);
        fd.append("request_id", base + "-" + i);
        fd.append("label", name);
        fd.append("photo", f, f.name);
        try {
          const res = await fetch(upload.getAttribute("action"), { method: "POST", headers: { Accept: "application/json", "X-CSRF-Token": csrf }, body: fd });
          const out = await res.json().catch(() => ({ ok: false, message: res.statusText }));
          if (out.ok) ok++;
          else errors.push(f.name + ": " + out.message);
        } catch (err) {
          errors.push(f.name + ": " + err.message);
        }
      }
      await refresh();
      say("Stored " + ok + " of " + files.length + " photos as “" + name + "”. " + errors.join("; "), errors.length > 0);
    });
  }
})();
