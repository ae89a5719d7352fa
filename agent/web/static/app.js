// Whisker's page script. The page works without it (plain forms and
// links); with it, actions do not reload the page, the page refreshes
// itself when the camera sees something or names change, the inbox takes
// keys, and photos can be dropped onto the upload form.
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
  async function refresh() {
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const res = await fetch(location.href, { headers: { Accept: "text/html" } });
        if (!res.ok) return;
        const doc = new DOMParser().parseFromString(await res.text(), "text/html");
        const main = document.getElementById("main");
        const fresh = doc.getElementById("main");
        if (!fresh) return;
        const active = document.activeElement;
        const holder = active && active.closest && active.closest("[id]");
        const keep = holder && holder !== main ? holder.id : "";
        main.innerHTML = fresh.innerHTML;
        const nav = document.querySelector("header nav");
        const freshNav = doc.querySelector("header nav");
        if (nav && freshNav) nav.innerHTML = freshNav.innerHTML;
        const again = keep && document.getElementById(keep);
        if (again) again.focus({ preventScroll: true });
        document.dispatchEvent(new Event("whisker:refreshed"));
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  // Forms post with fetch; the answer is shown and the page refreshed.
  document.addEventListener("submit", async (e) => {
    const form = e.target;
    if (form.hasAttribute("data-plain") || form.method.toLowerCase() !== "post") return;
    e.preventDefault();
    const data = new FormData(form, e.submitter);
    const multipart = form.enctype === "multipart/form-data";
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => (b.disabled = true));
    try {
      const res = await fetch(form.action, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRF-Token": csrf },
        body: multipart ? data : new URLSearchParams(data),
      });
      const out = await res.json().catch(() => ({ ok: false, message: res.status + " " + res.statusText }));
      say(out.message, !out.ok);
    } catch (err) {
      say("Not sent: " + err.message + ". Try again.", true);
    } finally {
      buttons.forEach((b) => (b.disabled = false));
    }
    await refresh();
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
      }, page === "live" ? 200 : 500);
    });
  }
  if (page === "health") {
    setInterval(() => { if (document.getElementById("eval") && !document.hidden) refresh(); }, 2000);
  }

  // Live: the latest frame, once a second.
  if (page === "live") {
    setInterval(() => {
      const img = document.getElementById("live-frame");
      if (img && !document.hidden) img.src = "/live/frame.jpg?t=" + Date.now();
    }, 1000);
  }

  // Inbox keys: 1-9 a pet, 0 neither, x not my pet, n a new name, j/k
  // (or arrows) the next or previous visit.
  if (page === "inbox") {
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey) return;
      const t = e.target;
      if (t.tagName === "INPUT" && t.type !== "checkbox") {
        if (e.key === "Escape") t.closest(".visit")?.focus();
        return;
      }
      if (t.tagName === "SELECT" || t.tagName === "TEXTAREA") return;
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
      cur = cur || visits[0];
      if (e.key === "n") {
        cur.querySelector("input[name=name]")?.focus();
        e.preventDefault();
        return;
      }
      const b = cur.querySelector('button[data-key="' + CSS.escape(e.key) + '"]');
      if (b) {
        cur.focus();
        b.click();
        e.preventDefault();
      }
    });
  }

  // Pets: drop photos onto the upload form; each is sent on its own, with
  // the fields first (the server reads them before any photo).
  const upload = document.getElementById("upload");
  if (upload) {
    const zone = upload.querySelector(".drop") || upload;
    ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
    zone.addEventListener("drop", async (e) => {
      e.preventDefault();
      const label = upload.querySelector("input[name=label]");
      if (!label.value.trim()) { say("Say whose photos these are first.", true); label.focus(); return; }
      const files = [...e.dataTransfer.files].filter((f) => /^image\/(jpeg|png)$/.test(f.type));
      if (!files.length) { say("Drop JPEG or PNG photos.", true); return; }
      const base = upload.querySelector("input[name=request_id]").value + "-" + Date.now();
      let ok = 0;
      const errors = [];
      for (const [i, f] of files.entries()) {
        say("Uploading " + (i + 1) + " of " + files.length + "…");
        const fd = new FormData();
        fd.append("csrf", csrf);
        fd.append("request_id", base + "-" + i);
        fd.append("label", label.value.trim());
        fd.append("photo", f, f.name);
        try {
          const res = await fetch(upload.action, { method: "POST", headers: { Accept: "application/json", "X-CSRF-Token": csrf }, body: fd });
          const out = await res.json().catch(() => ({ ok: false, message: res.statusText }));
          if (out.ok) ok++; else errors.push(f.name + ": " + out.message);
        } catch (err) {
          errors.push(f.name + ": " + err.message);
        }
      }
      say("Stored " + ok + " of " + files.length + " photos as “" + label.value.trim() + "”. " + errors.join("; "), errors.length > 0);
      await refresh();
    });
  }
})();
