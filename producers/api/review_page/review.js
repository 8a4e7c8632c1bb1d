// The review page: a reviewer key (sessionStorage), the pending queue, one item at a time, a/b to decide.
// Everything comes from this API: the image is the retained copy, fetched with the key and shown as a blob.
"use strict";
(() => {
  const KEY = "llavaguard.reviewerKey";
  const $ = (id) => document.getElementById(id);
  const categories = JSON.parse($("categories").textContent);
  let items = [];
  let index = 0;
  let busy = false;
  let imageUrl = null;

  const setStatus = (text) => { $("status").textContent = text; };
  const key = () => sessionStorage.getItem(KEY);

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${key()}`, ...(options.headers || {}) };
    const response = await fetch(path, { ...options, headers });
    if (response.status === 401 || response.status === 403) {
      const problem = await response.json().catch(() => ({}));
      sessionStorage.removeItem(KEY);
      showKeyForm(problem.detail || "the key was refused");
      throw new Error("refused");
    }
    return response;
  }

  function showKeyForm(why) {
    $("desk").hidden = true;
    $("forget-key").hidden = true;
    $("key-form").hidden = false;
    setStatus(why || "enter a reviewer key");
    $("key-input").focus();
  }

  async function load() {
    $("key-form").hidden = true;
    $("desk").hidden = false;
    $("forget-key").hidden = false;
    setStatus("loading the queue…");
    const response = await api("/v1/reviews?status=pending&limit=200");
    const body = await response.json();
    items = body.items;
    index = 0;
    $("pending-count").textContent = `(${body.pending})`;
    renderQueue();
    await show();
  }

  function renderQueue() {
    const queue = $("queue");
    queue.replaceChildren(...items.map((item, i) => {
      const li = document.createElement("li");
      li.textContent = item.id;
      li.dataset.id = item.id;
      if (i === index) li.className = "current";
      li.addEventListener("click", () => { index = i; renderQueue(); show(); });
      return li;
    }));
  }

  async function show() {
    const empty = items.length === 0;
    $("empty").hidden = !empty;
    $("figure").hidden = empty;
    $("label").hidden = empty;
    $("facts").hidden = empty;
    for (const id of ["item-id", "reason", "rating", "category", "score", "decision", "rationale"]) $(id).textContent = "";
    if (imageUrl) { URL.revokeObjectURL(imageUrl); imageUrl = null; }
    $("image").removeAttribute("src");
    if (empty) { setStatus("the queue is empty"); return; }
    const item = items[index];
    const v = item.verdict;
    $("item-id").textContent = v.id;
    $("reason").textContent = v.review ? v.review.reason : "";
    $("rating").textContent = v.rating;
    $("category").textContent = v.category;
    $("score").textContent = v.score == null ? `none (${v.score_source || "no log-probabilities"})` : v.score.toFixed(3);
    $("decision").textContent = v.decision || "";
    $("rationale").textContent = v.rationale || "";
    $("label-category").value = v.category === "NA: None applying" ? categories[0] : v.category;
    $("note").value = "";
    setStatus(`item ${index + 1} of ${items.length}: a allow, b block, n next, p previous`);
    const response = await api(item.image_url);
    if (response.ok && items[index] === item) {
      imageUrl = URL.createObjectURL(await response.blob());
      $("image").src = imageUrl;
      $("image-note").textContent = "";
    } else if (items[index] === item) {
      $("image-note").textContent = "the retained copy is gone (expired or deleted)";
    }
  }

  async function decide(decision) {
    if (busy || items.length === 0) return;
    busy = true;
    const item = items[index];
    const label = decision === "block"
      ? { rating: "Unsafe", category: $("label-category").value }
      : { rating: "Safe", category: "NA: None applying" };
    const note = $("note").value.trim();
    try {
      setStatus(`recording ${decision} for ${item.id}…`);
      const response = await api(`/v1/reviews/${encodeURIComponent(item.id)}`, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...label, note: note || null }),
      });
      const body = await response.json();
      if (!response.ok) { setStatus(`not recorded: ${body.detail}`); return; }
      const li = document.createElement("li");
      li.dataset.id = item.id;
      li.className = `decided-${body.verdict.decision}`;
      li.textContent = `${item.id}: ${body.verdict.decision} (${body.verdict.review.rating}, ${body.verdict.review.category.split(":")[0]})`;
      $("decided").prepend(li);
      items.splice(index, 1);
      if (index >= items.length) index = Math.max(0, items.length - 1);
      $("pending-count").textContent = `(${items.length})`;
      renderQueue();
      await show();
      setStatus(`decided ${item.id}: ${body.verdict.decision}` + (items.length ? "" : "; the queue is empty"));
    } finally {
      busy = false;
    }
  }

  function move(step) {
    if (items.length === 0) return;
    index = (index + step + items.length) % items.length;
    renderQueue();
    show();
  }

  document.addEventListener("keydown", (event) => {
    if ($("desk").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
    const tag = event.target.tagName;
    if (tag === "TEXTAREA" || tag === "INPUT") return;
    const action = { a: () => decide("allow"), b: () => decide("block"), n: () => move(1), j: () => move(1),
                     p: () => move(-1), k: () => move(-1) }[event.key];
    if (action) { event.preventDefault(); action(); }
  });

  window.addEventListener("DOMContentLoaded", () => {
    $("label-category").replaceChildren(...categories.map((c) => new Option(c, c)));
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, $("key-input").value);
      $("key-input").value = "";
      load().catch(() => {});
    });
    $("forget-key").addEventListener("click", () => { sessionStorage.removeItem(KEY); showKeyForm(); });
    $("allow").addEventListener("click", () => decide("allow"));
    $("block").addEventListener("click", () => decide("block"));
    $("next").addEventListener("click", () => move(1));
    $("prev").addEventListener("click", () => move(-1));
    if (key()) load().catch(() => {}); else showKeyForm();
  });
})();
