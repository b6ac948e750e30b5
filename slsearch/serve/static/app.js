// The slsearch search page: plain JS, no build step, no asset from the internet.
// Everything the server sends is inserted as text (textContent), never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  // The page's elements, by id (index.html).
  const [form, input, kSelect, button, fileInput, dropZone, errorBox, statusLine] =
    ["search-form", "q", "k", "search-button", "file", "drop-zone", "error", "status"].map($);
  const [resultsSection, resultsHeading, resultsList, translation] =
    ["results-section", "results-heading", "results", "translation"].map($);

  const K_CHOICES = ["5", "10", "20", "50"];
  let inFlight = null; // the AbortController of the request now running
  let generation = 0; // which request is the latest: only it may change the page when it ends

  // --- small helpers ---------------------------------------------------------------------------

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value !== null && value !== undefined) node.setAttribute(name, value);
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function glossText(glosses) {
    if (glosses === null || glosses === undefined) return "";
    if (Array.isArray(glosses)) return glosses.join(" ");
    return String(glosses);
  }

  function seconds(t) {
    if (typeof t !== "number" || !isFinite(t)) return "";
    const m = Math.floor(t / 60);
    const s = (t - 60 * m).toFixed(1).padStart(4, "0");
    return `${m}:${s}`;
  }

  function score(x) {
    return typeof x === "number" && isFinite(x) ? x.toFixed(3) : "";
  }

  function showError(message) {
    errorBox.textContent = message; // role=alert: read out as soon as it changes
    errorBox.hidden = false;
  }

  function clearError() {
    errorBox.textContent = "";
    errorBox.hidden = true;
  }

  function setBusy(busy, message) {
    resultsSection.setAttribute("aria-busy", busy ? "true" : "false");
    document.body.classList.toggle("busy", busy);
    button.disabled = busy;
    dropZone.classList.toggle("working", busy);
    if (message !== undefined) statusLine.textContent = message;
  }

  // The server's one sentence ({"detail": "..."}), whatever shape the error came in.
  async function errorSentence(response) {
    let detail = null;
    try {
      const body = await response.json();
      detail = body && body.detail;
    } catch (_) {
      /* not JSON */
    }
    if (typeof detail === "string" && detail) return detail;
    if (Array.isArray(detail) && detail.length && detail[0] && detail[0].msg) {
      return String(detail[0].msg); // FastAPI's validation errors: a list of {loc, msg}
    }
    return `The server answered ${response.status} ${response.statusText || ""}`.trim() + ".";
  }

  async function call(url, options) {
    if (inFlight) inFlight.abort(); // a new search replaces the one still running
    const controller = new AbortController();
    inFlight = controller;
    let response;
    try {
      response = await fetch(url, Object.assign({ signal: controller.signal }, options || {}));
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new Error("The server did not answer: is slsearch serve still running?");
    } finally {
      if (inFlight === controller) inFlight = null;
    }
    if (!response.ok) throw new Error(await errorSentence(response));
    return response.json();
  }

  // --- media -----------------------------------------------------------------------------------

  // A video result plays from `start` to `end`: media fragments where the browser honours them,
  // and a player that seeks to `start` and stops at `end` where it does not.
  function mediaFor(hit, label) {
    if (!hit.media_url || !hit.media_kind) {
      return el("p", { class: "no-media" }, "No playable media for this clip.");
    }
    const video = el("video", {
      controls: "", preload: "metadata", playsinline: "", "aria-label": label,
      "data-kind": hit.media_kind,
    });
    video.className = "player";
    const start = typeof hit.start === "number" && isFinite(hit.start) ? hit.start : null;
    const end = typeof hit.end === "number" && isFinite(hit.end) ? hit.end : null;
    // A text search's hit says where in the clip the query matched (`span`): playback starts there.
    const at = Array.isArray(hit.span) && typeof hit.span[0] === "number" && isFinite(hit.span[0])
      ? hit.span[0] : null;
    let src = hit.media_url;
    if (hit.media_kind === "video" && (start !== null || end !== null)) {
      const from = start !== null ? start : 0;
      const first = at !== null && at >= from && (end === null || at < end) ? at : from;
      src += `#t=${first}${end !== null ? "," + end : ""}`;
      video.dataset.start = start !== null ? String(start) : "0";
      if (end !== null) video.dataset.end = String(end);
      video.addEventListener("loadedmetadata", () => {
        if (video.currentTime < first) video.currentTime = first;
      });
      video.addEventListener("play", () => {
        // Played to the end of the segment (or before it): start the segment again.
        if (video.currentTime < from - 0.05 || (end !== null && video.currentTime >= end - 0.05)) {
          video.currentTime = from;
        }
      });
      if (end !== null) {
        video.addEventListener("timeupdate", () => {
          if (!video.paused && video.currentTime >= end) {
            video.pause();
            video.currentTime = end;
          }
        });
      }
    } else if (at !== null) {
      src += `#t=${at}`;
      video.addEventListener("loadedmetadata", () => {
        if (video.currentTime < at) video.currentTime = at;
      }, { once: true });
    }
    video.src = src;
    video.addEventListener("error", () => {
      const note = video.nextElementSibling;
      if (note && note.classList.contains("media-error")) return;
      video.after(el("p", { class: "media-error" }, "This browser cannot play this clip."));
    });
    return video;
  }

  // --- rendering -------------------------------------------------------------------------------

  function renderHit(hit) {
    const item = el("li", { class: "hit" });
    const headingId = `hit-${hit.rank}`;
    const article = el("article", { "aria-labelledby": headingId });
    const heading = el("h3", { id: headingId });
    heading.append(el("span", { class: "rank" }, `${hit.rank}.`), " ");
    heading.append(el("span", { class: hit.text ? "sentence" : "sentence missing" },
      hit.text || `Clip ${hit.id} (no sentence)`));
    article.append(heading);

    const what = hit.text ? `Clip ${hit.id}: ${hit.text}` : `Clip ${hit.id}`;
    article.append(mediaFor(hit, what));

    const facts = el("dl", { class: "facts" });
    const add = (term, value, cls) => {
      if (value === "" || value === null || value === undefined) return;
      const row = el("div");
      row.append(el("dt", {}, term), el("dd", cls ? { class: cls } : {}, value));
      facts.append(row);
    };
    add("Score", score(hit.score), "score");
    add("Gloss reading", glossText(hit.glosses) || "none (this model reads no glosses)",
      hit.glosses ? "glosses" : "glosses missing");
    add("Clip", hit.id, "clip-id");
    if (typeof hit.start === "number" || typeof hit.end === "number") {
      add("Segment", `${seconds(hit.start || 0)} – ${typeof hit.end === "number" ? seconds(hit.end) : "end"}`);
    }
    if (hit.media_kind === "skeleton") add("Media", "skeleton preview");
    article.append(facts);
    item.append(article);
    return item;
  }

  // After an error nothing stale stays on the page: only the error is shown.
  function clearShown() {
    translation.hidden = true;
    resultsSection.hidden = true;
    resultsList.replaceChildren();
  }

  function renderResults(data, heading) {
    translation.hidden = true;
    resultsSection.hidden = false;
    resultsList.replaceChildren();
    const hits = Array.isArray(data.results) ? data.results : [];
    for (const hit of hits) resultsList.append(renderHit(hit));
    resultsHeading.textContent = heading;
    const took = typeof data.took_ms === "number" ? ` in ${Math.round(data.took_ms)} ms` : "";
    statusLine.textContent = hits.length
      ? `${hits.length} result${hits.length === 1 ? "" : "s"}${took}.`
      : "No results.";
    if (!hits.length) resultsList.append(el("li", { class: "empty" }, "Nothing found in this index."));
  }

  function renderTranslation(data, name) {
    resultsList.replaceChildren();
    resultsSection.hidden = true;
    translation.hidden = false;
    $("translation-heading").textContent = `Translation of ${name}`;
    $("translation-text").textContent = data.translation || "(empty translation)";
    const glosses = glossText(data.glosses);
    $("translation-glosses").textContent = glosses;
    $("translation-glosses-row").hidden = !glosses;
    $("translation-score").textContent = score(data.score);
    $("translation-score-row").hidden = !score(data.score);
    statusLine.textContent = "Translated.";
  }

  // --- text search -----------------------------------------------------------------------------

  function currentK() {
    return K_CHOICES.includes(kSelect.value) ? kSelect.value : "10";
  }

  // One request of the page: a failure shows the server's sentence in place of the results, and the
  // busy state ends with the latest request (an older one's answer arriving late changes nothing).
  async function request(mine, work, after) {
    try {
      await work();
    } catch (err) {
      if (err.name === "AbortError") return;
      statusLine.textContent = "";
      clearShown();
      showError(err.message);
    } finally {
      if (mine === generation) setBusy(false);
      if (after) after();
    }
  }

  async function searchText(q, k) {
    const mine = ++generation;
    const glosses = searchBy() === "gloss";
    clearError();
    setBusy(true, glosses ? `Searching for the glosses “${q}”…` : `Searching for “${q}”…`);
    await request(mine, async () => {
      const api = glosses ? "/api/search/gloss" : "/api/search";
      const data = await call(`${api}?q=${encodeURIComponent(q)}&k=${encodeURIComponent(k)}`);
      const shown = data.query !== undefined ? data.query : q;
      renderResults(data, glosses ? `Clips signing ${shown}` : `Clips for “${shown}”`);
      if (glosses && data.unknown_glosses && data.unknown_glosses.length) {
        statusLine.textContent += ` Not in the model's glosses, left out: ${data.unknown_glosses.join(" ")}.`;
      }
      document.title = `${q} – slsearch`;
    });
  }

  // Search by a sentence or by glosses (shown when the index reads glosses, /api/stats).
  const byBox = $("search-by");
  function searchBy() {
    const checked = document.querySelector('input[name="by"]:checked');
    return checked && !byBox.hidden ? checked.value : "text";
  }
  function showSearchBy() {
    const glosses = searchBy() === "gloss";
    $("q-label").textContent = glosses ? "Search for glosses" : "Search for a sentence";
    input.placeholder = glosses ? "e.g. MORGEN REGEN" : "e.g. wetter morgen";
  }
  function setSearchBy(by) {
    const radio = document.querySelector(`input[name="by"][value="${by === "gloss" ? "gloss" : "text"}"]`);
    if (radio) radio.checked = true;
    showSearchBy();
  }
  document.querySelectorAll('input[name="by"]').forEach((radio) => radio.addEventListener("change", () => {
    showSearchBy();
    input.focus();
  }));

  // The URL says what is shown: /?q=...&k=... can be shared and reloaded.
  function fromUrl() {
    const params = new URLSearchParams(window.location.search);
    const q = (params.get("q") || "").trim();
    const k = params.get("k");
    if (k && K_CHOICES.includes(k)) kSelect.value = k;
    if (params.get("by") === "gloss") byBox.hidden = false; // before the statistics say so: the URL asks
    setSearchBy(params.get("by"));
    input.value = q;
    if (q) {
      searchText(q, currentK());
    } else {
      generation += 1; // back to the empty page: an answer still on its way is not shown
      if (inFlight) inFlight.abort();
      setBusy(false, "");
      clearError();
      clearShown();
      document.title = "slsearch";
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = input.value.trim();
    if (!q) {
      showError(searchBy() === "gloss" ? "Type the glosses to search for." : "Type a sentence to search for.");
      input.focus();
      return;
    }
    const params = new URLSearchParams({ q });
    if (searchBy() === "gloss") params.set("by", "gloss");
    if (currentK() !== "10") params.set("k", currentK());
    const url = `/?${params.toString()}`;
    if (url !== window.location.pathname + window.location.search) history.pushState({ q }, "", url);
    searchText(q, currentK());
  });

  window.addEventListener("popstate", fromUrl);

  // "/" jumps to the search box (as on many search sites), unless the user is typing somewhere.
  document.addEventListener("keydown", (event) => {
    if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.target;
    if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
    event.preventDefault();
    input.focus();
    input.select();
  });

  // --- search or translate with a clip ---------------------------------------------------------

  function target() {
    const checked = document.querySelector('input[name="target"]:checked');
    return checked ? checked.value : "texts";
  }

  async function sendClip(file) {
    if (!file) return;
    const mine = ++generation;
    clearError();
    const what = target();
    const body = new FormData();
    body.append("file", file, file.name);
    // A clip search is not a text search: the URL no longer names a query.
    if (window.location.search) history.pushState({}, "", "/");
    document.title = `${file.name} – slsearch`;
    setBusy(true, what === "translate" ? `Translating ${file.name}…` : `Searching with ${file.name}…`);
    await request(mine, async () => {
      if (what === "translate") {
        const data = await call("/api/translate", { method: "POST", body });
        renderTranslation(data, file.name);
        $("translation-heading").focus();
      } else {
        const url = `/api/search/clip?target=${what}&k=${encodeURIComponent(currentK())}`;
        const data = await call(url, { method: "POST", body });
        renderResults(data, what === "texts" ? `Sentences for ${file.name}` : `Clips like ${file.name}`);
        resultsHeading.focus();
      }
    }, () => { fileInput.value = ""; }); // the same file can be chosen again
  }

  fileInput.addEventListener("change", () => sendClip(fileInput.files && fileInput.files[0]));

  // Files dropped anywhere on the page go to the drop zone (and never make the browser leave the page).
  let dragDepth = 0;
  const hasFiles = (event) => event.dataTransfer && Array.from(event.dataTransfer.types || []).includes("Files");
  document.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    dropZone.classList.add("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropZone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    dropZone.classList.remove("dragging");
    const files = event.dataTransfer.files;
    if (!files || !files.length) return;
    sendClip(files[0]);
    if (files.length > 1) statusLine.textContent += " (One clip at a time: only the first file dropped is used.)";
  });

  // --- index statistics ------------------------------------------------------------------------

  async function loadStats() {
    const stats = $("stats");
    try {
      const response = await fetch("/api/stats");
      if (!response.ok) throw new Error(await errorSentence(response));
      const s = await response.json();
      const num = (x) => (typeof x === "number" ? x.toLocaleString("en") : String(x));
      const parts = [];
      if (typeof s.clips === "number") parts.push(`${num(s.clips)} clip${s.clips === 1 ? "" : "s"}`);
      if (typeof s.sentences === "number") parts.push(`${num(s.sentences)} sentence${s.sentences === 1 ? "" : "s"}`);
      if (s.media && typeof s.media === "object") {
        const kinds = [["video", "with video"], ["skeleton", "pose only"], ["none", "without media"]]
          .filter(([key]) => s.media[key]).map(([key, label]) => `${num(s.media[key])} ${label}`);
        if (kinds.length) parts.push(kinds.join(", "));
      }
      if (typeof s.signers === "number" && s.signers) parts.push(`${num(s.signers)} signer${s.signers === 1 ? "" : "s"}`);
      if (s.version) parts.push(`version ${s.version}`);
      if (s.reads_glosses) byBox.hidden = false;
      const name = s.index && s.index !== "index" ? `Index “${s.index}”` : "Index";
      stats.textContent = parts.length ? `${name}: ${parts.join(" · ")}.` : `${name}: no statistics.`;
    } catch (err) {
      stats.textContent = `Index statistics are not available: ${err.message}`;
    }
  }

  clearError();
  fromUrl();
  loadStats();
})();
