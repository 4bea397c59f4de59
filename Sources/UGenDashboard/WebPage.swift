/// The dashboard's web page: one self-contained HTML document, inline CSS and JavaScript, charts drawn on
/// <canvas> by hand. Nothing is fetched from elsewhere, so it works offline and on a cluster without internet.
///
/// The server inlines the current state (`{"type":"state", …}`, see `DashboardServer`) so the page draws at
/// once, then follows `/events` (Server-Sent Events); with `?poll` in the address, or in a browser without
/// EventSource, it polls `/api/state` every second instead.
enum WebPage {
    static func html(initialState: String) -> String {
        template.replacingOccurrences(of: "__INITIAL_STATE__", with: initialState)
    }

    private static let template = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>UGen dashboard</title>
        <style>
          :root { --bg:#0f1419; --panel:#18202a; --line:#2a3440; --text:#d8dee9; --dim:#8a96a6; }
          * { box-sizing: border-box; }
          body { margin: 0; padding: 16px 20px; background: var(--bg); color: var(--text);
                 font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; }
          h1 { font-size: 18px; margin: 0; font-weight: 600; }
          h2 { font-size: 13px; margin: 0 0 8px; color: var(--dim); font-weight: 600; text-transform: uppercase; letter-spacing: .05em; }
          .mono, td, .events { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace; font-size: 12.5px; }
          header { display: flex; align-items: baseline; gap: 18px; flex-wrap: wrap; margin-bottom: 12px; }
          header .dim { color: var(--dim); }
          #conn { margin-left: auto; font-size: 12px; color: var(--dim); }
          #conn.live::before { content: "● "; color: #a3be8c; }
          #conn.down::before { content: "● "; color: #bf616a; }
          .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
          .numbers { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 10px; margin-bottom: 12px; }
          .numbers .v { font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
          .numbers .k { color: var(--dim); font-size: 12px; }
          .bar { height: 10px; background: #0b0f13; border-radius: 5px; overflow: hidden; margin: 6px 0 4px; }
          .bar > div { height: 100%; background: linear-gradient(90deg, #5e81ac, #88c0d0); width: 0; transition: width .4s; }
          .grid { display: grid; gap: 12px; margin-bottom: 12px; }
          .g2 { grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
          .g3 { grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); }
          .chart .head { display: flex; justify-content: space-between; align-items: baseline; }
          .chart .now { font-variant-numeric: tabular-nums; font-weight: 600; }
          canvas { width: 100%; display: block; }
          .big canvas { height: 130px; } .small canvas { height: 64px; }
          table { border-collapse: collapse; width: 100%; }
          th { text-align: left; color: var(--dim); font-weight: 500; font-size: 12px; padding: 2px 10px 4px 0; }
          td { padding: 2px 10px 2px 0; } td.n, th.n { text-align: right; }
          .st-up { color: #a3be8c; } .st-lost, .st-error { color: #bf616a; } .st-left { color: var(--dim); }
          .events div { padding: 1px 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
          .kind { display: inline-block; min-width: 88px; }
          .k-join, .k-resume { color: #a3be8c; } .k-lost, .k-error { color: #bf616a; } .k-leave { color: var(--dim); }
          .k-checkpoint { color: #88c0d0; } .k-phase { color: #b48ead; }
          #problems { color: #ebcb8b; margin-top: 8px; }
          #config { color: var(--dim); margin-top: 10px; }
          .wait { color: #ebcb8b; }
        </style>
        </head>
        <body>
        <header>
          <h1>UGen run <span id="run" class="mono"></span></h1>
          <span>step <b id="step">–</b><span id="total" class="dim"></span></span>
          <span id="updated" class="dim"></span>
          <span id="conn">connecting</span>
        </header>
        <div id="waiting" class="wait"></div>
        <section class="numbers">
          <div class="panel"><div class="k">loss</div><div class="v" id="n-loss">–</div></div>
          <div class="panel"><div class="k">learning rate</div><div class="v" id="n-lr">–</div></div>
          <div class="panel"><div class="k">grad norm</div><div class="v" id="n-grad">–</div></div>
          <div class="panel"><div class="k">tokens / s</div><div class="v" id="n-tps">–</div></div>
          <div class="panel"><div class="k">tokens</div><div class="v" id="n-tokens">–</div></div>
        </section>
        <section class="panel" style="margin-bottom:12px">
          <h2>Progressive vocabulary</h2>
          <div class="bar"><div id="vocab-bar"></div></div>
          <div id="vocab-text" class="mono"></div>
        </section>
        <section class="grid g2" id="loss-charts"></section>
        <section class="grid g3" id="other-charts"></section>
        <section class="grid g2">
          <div class="panel"><h2>Workers</h2><table id="workers"></table></div>
          <div class="panel"><h2>Events</h2><div id="events" class="events"></div></div>
        </section>
        <div id="config" class="mono"></div>
        <div id="problems" class="mono"></div>
        <script id="initial" type="application/json">__INITIAL_STATE__</script>
        <script>
        "use strict";
        const LOSSES = [["loss", "all tasks", "#e5e9f0"], ["loss_text", "text", "#88c0d0"],
                        ["loss_img2txt", "image→text", "#a3be8c"], ["loss_txt2img", "text→image", "#ebcb8b"]];
        const OTHERS = [["lr", "learning rate", "#b48ead", sci], ["grad_norm", "grad norm", "#d08770", v => fixed(v, 3)],
                        ["tokens_per_s", "tokens / s", "#81a1c1", grouped]];
        const MAX_POINTS = 4000;
        let S = null;

        function $(id) { return document.getElementById(id); }
        function num(v) { return typeof v === "string" ? Number(v) : v; }   // NaN / Infinity arrive as strings
        function fixed(v, d) { v = num(v); return v == null ? "–" : Number.isFinite(v) ? v.toFixed(d) : String(v); }
        function sci(v) { v = num(v); return v == null ? "–" : Number.isFinite(v) ? v.toExponential(2) : String(v); }
        function grouped(v) { v = num(v); return v == null ? "–" : Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : String(v); }
        function clock(t) { return t == null ? "--:--:--" : new Date(t * 1000).toLocaleTimeString("en-GB"); }
        function age(s) { s = Math.max(0, Math.floor(s)); return s < 120 ? s + "s" : s < 7200 ? Math.floor(s / 60) + "m" : \#
        s < 172800 ? Math.floor(s / 3600) + "h" : Math.floor(s / 86400) + "d"; }
        function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]); }

        // Same rule as the server's Series: a step at or before the last one means the run resumed from a
        // checkpoint, so later points go; past MAX_POINTS the older half is thinned by averaging pairs.
        function push(series, step, value) {
          const st = series.steps, va = series.values;
          if (st.length && step <= st[st.length - 1]) {
            let k = st.findIndex(s => s >= step); st.length = k; va.length = k;
          }
          st.push(step); va.push(value);
          if (st.length >= MAX_POINTS) {
            const half = (st.length >> 1) & ~1, s2 = [], v2 = [];
            for (let i = 0; i < half; i += 2) { s2.push(st[i]); v2.push((num(va[i]) + num(va[i + 1])) / 2); }
            series.steps = s2.concat(st.slice(half)); series.values = v2.concat(va.slice(half));
          }
        }

        function onMessage(m) {
          if (m.type === "state") { S = m; }
          else if (m.type === "update" && S) {
            for (const r of m.records) {
              for (const [key] of LOSSES) if (r.losses[key] != null) push(S.curves.losses[key], r.step, r.losses[key]);
              for (const [key] of OTHERS) if (r[key] != null) push(S.curves[key], r.step, r[key]);
            }
            S.status = m.status;
          }
          render();
        }

        function makeCharts() {
          const box = (key, title, cls) => `<div class="panel chart ${cls}"><div class="head"><h2>${esc(title)}</h2>` +
            `<span class="now" id="now-${key}">–</span></div><canvas id="c-${key}"></canvas></div>`;
          $("loss-charts").innerHTML = LOSSES.map(([k, t]) => box(k, t, "big")).join("");
          $("other-charts").innerHTML = OTHERS.map(([k, t]) => box(k, t, "small")).join("");
        }

        function drawChart(canvas, series, x0, x1, color, fmt) {
          const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
          canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
          const g = canvas.getContext("2d");
          g.setTransform(dpr, 0, 0, dpr, 0, 0); g.clearRect(0, 0, w, h);
          g.font = "11px ui-monospace, monospace"; g.fillStyle = "#8a96a6"; g.strokeStyle = "#2a3440"; g.lineWidth = 1;
          const L = 64, R = 8, T = 6, B = 16, pw = w - L - R, ph = h - T - B;
          let lo = Infinity, hi = -Infinity;
          for (const v of series.values) { const x = num(v); if (Number.isFinite(x)) { lo = Math.min(lo, x); hi = Math.max(hi, x); } }
          if (lo > hi) { g.fillText("no steps yet", L, T + ph / 2); return; }
          if (hi === lo) { const d = Math.abs(hi) * 0.05 || 1; hi += d; lo -= d; }
          const X = s => L + (s - x0) / Math.max(1, x1 - x0) * pw, Y = v => T + (hi - v) / (hi - lo) * ph;
          g.textAlign = "right";
          const lines = h < 100 ? 1 : 3;
          for (let i = 0; i <= lines; i++) {
            const v = lo + (hi - lo) * i / lines, y = Math.round(Y(v)) + 0.5;
            g.beginPath(); g.moveTo(L, y); g.lineTo(L + pw, y); g.stroke();
            g.fillText(fmt(v), L - 6, y + 4);
          }
          g.textAlign = "left"; g.fillText("step " + x0, L, h - 3);
          g.textAlign = "right"; g.fillText("step " + x1, L + pw, h - 3);
          g.strokeStyle = color; g.lineWidth = 1.5; g.lineJoin = "round"; g.beginPath();
          let pen = false;
          for (let i = 0; i < series.steps.length; i++) {
            const v = num(series.values[i]);
            if (!Number.isFinite(v)) { pen = false; continue; }
            const x = X(series.steps[i]), y = Y(v);
            if (pen) g.lineTo(x, y); else { g.moveTo(x, y); pen = true; }
          }
          g.stroke();
        }

        function render() {
          if (!S) return;
          const st = S.status, r = st.latest, c = S.curves;
          $("run").textContent = st.run_directory;
          $("step").textContent = r ? r.step : "–";
          $("total").textContent = st.total_steps ? " / " + st.total_steps : "";
          $("waiting").textContent = !st.run_directory_exists ? "waiting for run directory " + st.run_directory
            : !st.metrics_exists ? "waiting for " + st.run_directory + "/metrics.jsonl"
            : !r ? "waiting for the first step in metrics.jsonl" : "";
          $("n-loss").textContent = r ? fixed(r.losses.loss, 4) : "–";
          $("n-lr").textContent = r ? sci(r.lr) : "–";
          $("n-grad").textContent = r ? fixed(r.grad_norm, 3) : "–";
          $("n-tps").textContent = r ? grouped(r.tokens_per_s) : "–";
          $("n-tokens").textContent = r ? grouped(r.tokens) : "–";

          const active = r ? r.active_visual_ids : null, K = st.codebook;
          $("vocab-bar").style.width = active != null && K ? Math.min(100, 100 * active / K) + "%" : "0";
          $("vocab-text").textContent = active == null ? "no active_visual_ids in metrics"
            : K ? `${active} / ${K} visual ids active (${Math.floor(100 * active / K)}%)` : \#
        `${active} visual ids active (codebook size K unknown)`;

          const all = [...Object.values(c.losses), c.lr, c.grad_norm, c.tokens_per_s];
          const firsts = all.filter(s => s.steps.length).map(s => s.steps[0]);
          const lasts = all.filter(s => s.steps.length).map(s => s.steps[s.steps.length - 1]);
          const x0 = firsts.length ? Math.min(...firsts) : 0, x1 = lasts.length ? Math.max(...lasts) : 1;
          for (const [key, , color] of LOSSES) {
            const s = c.losses[key];
            drawChart($("c-" + key), s, x0, x1, color, v => fixed(v, 3));
            $("now-" + key).textContent = s.values.length ? fixed(s.values[s.values.length - 1], 4) : "–";
          }
          for (const [key, , color, fmt] of OTHERS) {
            drawChart($("c-" + key), c[key], x0, x1, color, fmt);
            $("now-" + key).textContent = c[key].values.length ? fmt(c[key].values[c[key].values.length - 1]) : "–";
          }

          $("events").innerHTML = st.events.slice(-20).reverse().map(e =>
            `<div>${clock(e.time)} <span class="kind k-${esc(e.kind)}">${esc(e.kind)}</span> ` +
            esc(e.details.map(d => d.key + "=" + d.value).join(" ")) + "</div>").join("") || "<div>no events yet</div>";
          $("config").textContent = st.config.length ? "config  " + st.config.map(e => e.key + "=" + e.value).join("  ") : "";
          $("problems").textContent = st.malformed.map(m =>
            `${m.file}: ${m.count} unreadable line${m.count === 1 ? "" : "s"} skipped; first at ${m.first}`).join("\n");
          renderClock();
        }

        // Ages ("3s ago") move with the wall clock, so they are redrawn every second between messages.
        function renderClock() {
          if (!S) return;
          const now = Date.now() / 1000, st = S.status, r = st.latest;
          $("updated").textContent = r && r.time != null ? `${clock(r.time)} (${age(now - r.time)} ago)` : "";
          const ms = v => `<td class="n">${fixed(v, 1)}</td>`;
          $("workers").innerHTML = "<tr><th>worker</th><th>host</th><th>stage</th><th>replica</th><th>state</th><th>seen</th>" +
            '<th class="n">fwd ms</th><th class="n">bwd ms</th><th class="n">wait ms</th></tr>' +
            (st.workers.map(w => `<tr><td>${esc(w.id)}</td><td>${esc(w.host ?? "–")}</td><td>${w.stage ?? "–"}</td>` +
              `<td>${w.replica ?? "–"}</td><td class="st-${esc(w.state)}">${esc(w.state)}</td>` +
              `<td>${w.last_seen != null ? age(now - w.last_seen) + " ago" : "–"}</td>` +
              ms(w.forward_ms) + ms(w.backward_ms) + ms(w.wait_ms) + "</tr>").join("") ||
             '<tr><td colspan="9">no workers seen yet</td></tr>');
        }

        // Live by the event stream; by polling when asked (`/?poll`: for proxies that buffer streams, and for
        // headless browsers whose virtual clock stands still while a request is open) or without EventSource.
        function connect() {
          if (new URLSearchParams(location.search).has("poll") || !window.EventSource) { poll(); setInterval(poll, 1000); return; }
          const es = new EventSource("/events");
          es.onopen = () => { $("conn").textContent = "live"; $("conn").className = "live"; };
          es.onmessage = e => onMessage(JSON.parse(e.data));
          es.onerror = () => { $("conn").textContent = "reconnecting"; $("conn").className = "down"; };
        }
        function poll() {
          fetch("/api/state").then(r => r.json()).then(m => { onMessage(m); $("conn").textContent = "polling"; \#
        $("conn").className = "live"; })
            .catch(() => { $("conn").textContent = "no connection"; $("conn").className = "down"; });
        }

        makeCharts();
        onMessage(JSON.parse($("initial").textContent));
        connect();
        setInterval(renderClock, 1000);
        window.addEventListener("resize", render);
        </script>
        </body>
        </html>
        """#
}
