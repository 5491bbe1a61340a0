// shield's operator dashboard: every action is a call to the documented APIs.
"use strict";

const $ = (selector) => document.querySelector(selector);
const TOKEN_KEY = "shield-admin-token";
const COLORS = ["#1565c0", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f"];
const REFRESH_MS = 3000;
const state = { history: {}, last: {}, timer: null, projects: [] };

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

class ApiError extends Error {}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  const data = await resp.json().catch(() => null);
  if (!resp.ok) {
    const error = data && data.error ? data.error : { code: "error", message: resp.statusText };
    throw new ApiError(`${resp.status} ${error.code}: ${error.message}`);
  }
  return data;
}

// Run an action; show the API's message when it fails, never a blank page.
async function guarded(action) {
  try {
    showError("");
    return await action();
  } catch (err) {
    showError(err instanceof ApiError ? err.message : `shield could not be reached: ${err.message}`);
    return undefined;
  }
}

function human(bytes) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function button(parent, label, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.addEventListener("click", onClick);
  parent.appendChild(b);
  return b;
}

function list(value) {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

// -- log in, tabs

async function logIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("#token").value.trim());
  const ok = await guarded(() => api("GET", "/v1/stats"));
  if (ok === undefined) {
    sessionStorage.removeItem(TOKEN_KEY);
    return;
  }
  start();
}

function show(view) {
  document.querySelectorAll(".view").forEach((v) => { v.hidden = v.id !== `view-${view}`; });
  document.querySelectorAll("#tabs button[data-view]").forEach((b) => {
    b.classList.toggle("active", b.dataset.view === view);
  });
  if (view === "projects") loadProjects();
  if (view === "assets") loadAssets();
}

async function start() {
  $("#login").hidden = true;
  await loadProjectNames();
  show("overview");
  // The tabs appear once the first view is shown: a tab clicked while the project
  // names were loading used to be switched back to the overview.
  $("#tabs").hidden = false;
  refresh();
  clearInterval(state.timer);
  state.timer = setInterval(refresh, REFRESH_MS);
}

async function loadProjectNames() {
  const data = await guarded(() => api("GET", "/v1/projects?limit=500"));
  if (!data) return;
  state.projects = data.items;
  for (const id of ["#keys-project", "#assets-project", "#play-project"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...data.items.map((p) => new Option(p.name, p.name)));
    if (chosen) select.value = chosen;
  }
}

// -- overview

async function refresh() {
  const totals = await guarded(() => api("GET", "/v1/stats"));
  if (!totals) return;
  $("#total-requests").textContent = totals.requests.toLocaleString("en");
  $("#total-hit-ratio").textContent = `${(totals.hit_ratio * 100).toFixed(1)}%`;
  $("#total-bytes").textContent = human(totals.bytes_served);
  $("#total-origin-fetches").textContent = totals.origin_fetches.toLocaleString("en");
  const rows = [];
  for (const project of state.projects) {
    const stats = await guarded(() => api("GET", `/v1/stats?project=${encodeURIComponent(project.name)}`));
    if (!stats) return;
    rows.push([project.name, stats]);
    const before = state.last[project.name];
    const series = (state.history[project.name] = state.history[project.name] || []);
    series.push(before === undefined ? 0 : Math.max(0, stats.requests - before));
    if (series.length > 60) series.shift();
    state.last[project.name] = stats.requests;
  }
  const body = $("#per-project tbody");
  body.replaceChildren();
  for (const [name, stats] of rows) {
    const tr = document.createElement("tr");
    tr.dataset.project = name;
    cell(tr, name);
    cell(tr, stats.requests.toLocaleString("en"));
    cell(tr, `${(stats.hit_ratio * 100).toFixed(1)}%`);
    cell(tr, human(stats.bytes_served));
    cell(tr, stats.origin_fetches.toLocaleString("en"));
    body.appendChild(tr);
  }
  drawChart();
  $("#refreshed").textContent = `refreshed ${new Date().toLocaleTimeString()}`;
}

function drawChart() {
  const svg = $("#chart");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const names = Object.keys(state.history).slice(0, COLORS.length);
  const peak = Math.max(1, ...names.flatMap((n) => state.history[n]));
  const legend = $("#legend");
  legend.replaceChildren();
  names.forEach((name, i) => {
    const series = state.history[name];
    const points = series.map((v, x) => `${(x / 59) * 600},${150 - (v / peak) * 140}`).join(" ");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points);
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i]);
    line.setAttribute("stroke-width", "2");
    svg.appendChild(line);
    const key = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = COLORS[i];
    key.append(swatch, name);
    legend.appendChild(key);
  });
}

// -- purge

async function purge(event) {
  event.preventDefault();
  const form = event.target.elements;
  const body = {};
  if (form.tags.value.trim()) body.tags = list(form.tags.value);
  if (form.paths.value.trim()) body.paths = list(form.paths.value);
  if (form.prefixes.value.trim()) body.prefixes = list(form.prefixes.value);
  if (form.project.value.trim()) {
    body.project = form.project.value.trim();
    body.everything = true;
  }
  const result = await guarded(() => api("POST", "/v1/purge", body));
  if (result) $("#purge-result").textContent = `purged ${result.purged} variants (${result.status}, purge_id ${result.purge_id})`;
}

// -- projects and keys

async function loadProjects() {
  await loadProjectNames();
  const body = $("#projects tbody");
  body.replaceChildren();
  for (const project of state.projects) {
    const tr = document.createElement("tr");
    tr.dataset.project = project.name;
    cell(tr, project.name);
    cell(tr, project.origin);
    cell(tr, project.domain || "-");
    cell(tr, project.enabled ? "yes" : "no");
    const actions = cell(tr, "");
    button(actions, "Edit", () => editProject(project));
    button(actions, project.enabled ? "Disable" : "Enable", async () => {
      if (await guarded(() => api("PATCH", `/v1/projects/${project.name}`, { enabled: !project.enabled }))) loadProjects();
    });
    body.appendChild(tr);
  }
  loadKeys();
}

function editProject(project) {
  const form = $("#project-edit");
  form.hidden = false;
  form.dataset.project = project.name;
  $("#editing").textContent = project.name;
  const changes = { ...project };
  delete changes.name;
  delete changes.signing_key;
  form.elements.changes.value = JSON.stringify(changes, null, 2);
}

async function saveProject(event) {
  event.preventDefault();
  const form = event.target;
  let changes;
  try {
    changes = JSON.parse(form.elements.changes.value);
  } catch (err) {
    showError(`The changes are not JSON: ${err.message}`);
    return;
  }
  if (await guarded(() => api("PATCH", `/v1/projects/${form.dataset.project}`, changes))) {
    form.hidden = true;
    loadProjects();
  }
}

async function createProject(event) {
  event.preventDefault();
  const form = event.target.elements;
  const made = await guarded(() => api("POST", "/v1/projects", { name: form.name.value.trim(), origin: form.origin.value.trim() }));
  if (made) {
    event.target.reset();
    loadProjects();
  }
}

async function loadKeys() {
  const project = $("#keys-project").value;
  if (!project) return;
  const data = await guarded(() => api("GET", `/v1/projects/${project}/keys`));
  if (!data) return;
  const body = $("#keys tbody");
  body.replaceChildren();
  for (const key of data.items) {
    const tr = document.createElement("tr");
    tr.dataset.key = key.id;
    cell(tr, key.id);
    cell(tr, key.name);
    cell(tr, key.scopes.join(", "));
    cell(tr, key.expires_at || "never");
    cell(tr, key.revoked ? "yes" : "no");
    const actions = cell(tr, "");
    if (!key.revoked) {
      button(actions, "Revoke", async () => {
        if (await guarded(() => api("DELETE", `/v1/projects/${project}/keys/${key.id}`))) loadKeys();
      });
    }
    body.appendChild(tr);
  }
}

async function createKey(event) {
  event.preventDefault();
  const project = $("#keys-project").value;
  const made = await guarded(() => api("POST", `/v1/projects/${project}/keys`, { name: event.target.elements.name.value.trim() }));
  if (!made) return;
  $("#secret").textContent = made.secret;
  $("#new-secret").hidden = false;
  loadKeys();
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.appendChild(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
}

// -- assets

async function loadAssets() {
  const project = $("#assets-project").value;
  if (!project) return;
  const data = await guarded(() => api("GET", `/v1/assets?project=${encodeURIComponent(project)}&limit=100`));
  if (!data) return;
  const listing = $("#asset-list");
  listing.replaceChildren();
  for (const asset of data.items) {
    const box = document.createElement("div");
    box.className = "asset";
    box.dataset.asset = asset._id;
    const img = document.createElement("img");
    img.src = `/${asset.bucket}/${asset.key}?w=140&h=100&fit=contain`;
    img.alt = asset.name;
    const caption = document.createElement("div");
    caption.textContent = `${asset.key} (${human(asset.size)})`;
    box.append(img, caption);
    button(box, "Delete", async () => {
      if (await guarded(() => api("DELETE", `/v1/assets/${asset._id}`))) loadAssets();
    });
    listing.appendChild(box);
  }
}

function uploadFiles(files) {
  const project = $("#assets-project").value;
  const bar = $("#upload-progress");
  const queue = Array.from(files);
  const next = () => {
    const file = queue.shift();
    if (!file) {
      bar.hidden = true;
      loadAssets();
      return;
    }
    const form = new FormData();
    form.append("file", file);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/assets?project=${encodeURIComponent(project)}`);
    xhr.setRequestHeader("Authorization", `Bearer ${token()}`);
    bar.hidden = false;
    bar.value = 0;
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = e.loaded / e.total; };
    xhr.onload = () => {
      let data = null;
      try { data = JSON.parse(xhr.responseText); } catch (err) { data = null; }
      if (xhr.status === 201) {
        showError("");
        $("#upload-result").textContent = `uploaded ${file.name} as ${data.asset.key}`;
      } else {
        const error = data && data.error ? data.error : { code: "error", message: xhr.statusText };
        showError(`${xhr.status} ${error.code}: ${error.message}`);
      }
      next();
    };
    xhr.onerror = () => { showError("The upload broke off."); next(); };
    xhr.send(form);
  };
  next();
}

// -- playground

function hexOf(buffer) {
  return Array.from(new Uint8Array(buffer)).map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function signed(path, params, signingKey) {
  // Contract section 4: sig = hex HMAC-SHA256 of "<path>?<every other parameter, sorted, urlencoded>".
  const sorted = new URLSearchParams([...params.entries()].sort((a, b) => (a[0] < b[0] ? -1 : 1)));
  const message = `${path}?${sorted.toString()}`;
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(signingKey), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  sorted.append("sig", hexOf(await crypto.subtle.sign("HMAC", key, new TextEncoder().encode(message))));
  return `${path}?${sorted.toString()}`;
}

async function play(event) {
  event.preventDefault();
  const form = event.target.elements;
  const path = `/${form.project.value}/${form.file.value.replace(/^\/+/, "")}`;
  const params = new URLSearchParams();
  for (const name of ["w", "h", "fit", "fmt", "q", "dpr"]) {
    if (form[name].value) params.set(name, form[name].value);
  }
  const signingKey = form.signing_key.value;
  const url = signingKey ? await signed(path, params, signingKey) : `${path}${params.toString() ? `?${params}` : ""}`;
  await guarded(async () => {
    const resp = await fetch(url, { cache: "no-store" });
    if (!resp.ok) {
      const data = await resp.json().catch(() => null);
      const error = data && data.error ? data.error : { code: "error", message: resp.statusText };
      throw new ApiError(`${resp.status} ${error.code}: ${error.message}`);
    }
    const blob = await resp.blob();
    const img = $("#play-image");
    img.onload = () => { $("#play-size").textContent = `${img.naturalWidth}x${img.naturalHeight}`; };
    img.src = URL.createObjectURL(blob);
    $("#play-url").textContent = new URL(url, location.href).href;
    $("#play-bytes").textContent = `${blob.size.toLocaleString("en")} (${human(blob.size)})`;
    $("#play-format").textContent = resp.headers.get("Content-Type");
    $("#play-cache").textContent = resp.headers.get("X-Cache");
    $("#play-timing").textContent = resp.headers.get("Server-Timing");
    $("#play-snippet").textContent = snippet(path, params);
  });
}

function snippet(path, params) {
  const base = new URL(path, location.href).href;
  const at = (extra) => {
    const p = new URLSearchParams(params);
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return `${base}?${p}`;
  };
  const width = Number(params.get("w")) || 640;
  const widths = [320, 640, 960, 1280, 1920].map((w) => `${at({ w, dpr: "1" })} ${w}w`).join(",\n       ");
  return `<img src="${at({ w: width })}"\n     srcset="${at({ w: width, dpr: "1" })} 1x, ${at({ w: width, dpr: "2" })} 2x"\n     width="${width}" alt="">\n\n<img src="${at({ w: width })}"\n     srcset="${widths}"\n     sizes="(max-width: ${width}px) 100vw, ${width}px" alt="">`;
}

// -- wiring

document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", logIn);
  document.querySelectorAll("#tabs button[data-view]").forEach((b) => b.addEventListener("click", () => show(b.dataset.view)));
  $("#logout").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); location.reload(); });
  $("#purge-form").addEventListener("submit", purge);
  $("#project-form").addEventListener("submit", createProject);
  $("#project-edit").addEventListener("submit", saveProject);
  $("#keys-project").addEventListener("change", loadKeys);
  $("#key-form").addEventListener("submit", createKey);
  $("#copy-secret").addEventListener("click", () => copyText($("#secret").textContent));
  $("#assets-project").addEventListener("change", loadAssets);
  $("#file-chooser").addEventListener("change", (e) => uploadFiles(e.target.files));
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); uploadFiles(e.dataTransfer.files); });
  $("#play-form").addEventListener("submit", play);
  $("#copy-snippet").addEventListener("click", () => copyText($("#play-snippet").textContent));
  if (token()) start();
});
