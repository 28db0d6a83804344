// floodgate demo page. Plain JS, no dependencies; runs under a strict CSP
// (script-src 'self', style-src 'self'): no inline code, no style attributes.
//
// Query hooks (all validated, anything else ignored):
//   ?interval=MS   spacing between requests in ms, an integer 0..2000
//                  (default: 10000 / count, so a run lasts about 10 s)
//   ?count=N       preselect 5, 10, 15 or 20 requests
//   ?autostart=1   start one run as soon as the page has loaded
'use strict';

(() => {
  const WINDOW_MS = 10000; // a run is spread over this long
  const REQUEST_TIMEOUT_MS = 15000; // a request still unanswered then counts as a network error
  const COUNTS = [5, 10, 15, 20];
  const MAX_PIPS = 40;

  const $ = (id) => document.getElementById(id);
  const els = {
    form: $('run-form'),
    countSet: $('count-set'),
    send: $('send'),
    pace: $('pace'),
    state: $('state'),
    progress: $('progress'),
    allowed: $('allowed-count'),
    blocked: $('blocked-count'),
    other: $('other-count'),
    results: $('results'),
    empty: $('results-empty'),
    limit: $('limit'),
    remaining: $('remaining'),
    reset: $('reset'),
    retryBox: $('retry-after-box'),
    retryAfter: $('retry-after'),
    quota: $('quota'),
    pips: $('pips'),
    note: $('status-note'),
  };

  // ---- query hooks -------------------------------------------------------

  const params = new URLSearchParams(window.location.search);

  function intParam(name, min, max) {
    const raw = params.get(name);
    if (raw === null || !/^\d{1,5}$/.test(raw)) return null;
    const n = Number(raw);
    return n >= min && n <= max ? n : null;
  }

  const intervalOverride = intParam('interval', 0, 2000);
  const countParam = intParam('count', 1, 20);
  const autostart = params.get('autostart') === '1';

  if (countParam !== null && COUNTS.includes(countParam)) {
    const radio = document.querySelector(`input[name="count"][value="${countParam}"]`);
    if (radio) radio.checked = true;
  }

  // ---- helpers -----------------------------------------------------------

  function selectedCount() {
    const checked = document.querySelector('input[name="count"]:checked');
    const n = checked ? Number(checked.value) : 15;
    return COUNTS.includes(n) ? n : 15;
  }

  function spacingFor(count) {
    return intervalOverride !== null ? intervalOverride : WINDOW_MS / count;
  }

  function fmtSeconds(ms) {
    const s = ms / 1000;
    return String(Number(s < 10 ? s.toFixed(2) : s.toFixed(1)));
  }

  // A header holding a non-negative integer, or null.
  function intHeader(headers, name) {
    const v = headers.get(name);
    if (v === null) return null;
    const t = v.trim();
    return /^\d+$/.test(t) ? Number(t) : null;
  }

  // A number in the status panel, or a dash when there is none.
  function setNum(el, n) {
    el.textContent = n === null ? '—' : String(n);
    el.classList.toggle('na', n === null);
  }

  function setState(s) {
    els.state.textContent = s;
    els.state.className = `state state-${s}`;
  }

  function updatePace() {
    const count = selectedCount();
    const spacing = spacingFor(count);
    if (intervalOverride !== null) {
      els.pace.textContent = `Test pacing (?interval=${intervalOverride}): one request every ${fmtSeconds(spacing)} s, the first at once.`;
    } else {
      els.pace.textContent = `Spread over 10 seconds: one request every ${fmtSeconds(spacing)} s, the first at once.`;
    }
  }

  // ---- the status panel --------------------------------------------------

  // Both countdowns run from the moment their response arrived.
  const status = {
    resetDeadline: null, // performance.now() at which the window resets
    retryDeadline: null, // performance.now() at which Retry-After has passed
    timer: null,
  };

  const secondsLeft = (deadline, now) => Math.max(0, Math.ceil((deadline - now) / 1000));

  function tick() {
    const now = performance.now();
    let running = false;
    if (status.resetDeadline !== null) {
      const left = secondsLeft(status.resetDeadline, now);
      setNum(els.reset, left);
      els.reset.classList.toggle('is-zero', left === 0);
      if (left > 0) running = true;
      else if (!runner.active && !els.reset.dataset.announced) {
        els.reset.dataset.announced = '1';
        setNote('The window has reset: the full quota is available again.', 'ok');
      }
    }
    if (status.retryDeadline !== null) {
      const left = secondsLeft(status.retryDeadline, now);
      setNum(els.retryAfter, left);
      if (left > 0) running = true;
    }
    if (!running) stopTimer();
  }

  function startTimer() {
    stopTimer();
    tick();
    if (status.timer === null && (status.resetDeadline !== null || status.retryDeadline !== null)) {
      status.timer = window.setInterval(tick, 250);
    }
  }

  function stopTimer() {
    if (status.timer !== null) window.clearInterval(status.timer);
    status.timer = null;
  }

  function setReset(seconds, arrivedAt) {
    delete els.reset.dataset.announced;
    if (seconds === null) {
      status.resetDeadline = null;
      setNum(els.reset, null);
      els.reset.classList.remove('is-zero');
      delete els.reset.dataset.header;
    } else {
      status.resetDeadline = arrivedAt + seconds * 1000;
      els.reset.dataset.header = String(seconds); // the raw header value
    }
  }

  function setRetryAfter(seconds, arrivedAt) {
    if (seconds === null) {
      status.retryDeadline = null;
      els.retryBox.hidden = true;
      setNum(els.retryAfter, null);
      delete els.retryAfter.dataset.header;
    } else {
      status.retryDeadline = arrivedAt + seconds * 1000;
      els.retryAfter.dataset.header = String(seconds); // the raw header value
      els.retryBox.hidden = false;
    }
  }

  function setNote(text, kind) {
    els.note.textContent = text;
    els.note.className = kind ? `note note-${kind}` : 'note';
  }

  function renderPips(limit, remaining) {
    if (limit === null || remaining === null || limit < 1 || limit > MAX_PIPS) {
      els.quota.hidden = true;
      els.pips.replaceChildren();
      return;
    }
    const frag = document.createDocumentFragment();
    for (let i = 0; i < limit; i++) {
      const pip = document.createElement('span');
      pip.className = i < remaining ? 'pip pip-left' : 'pip pip-used';
      frag.appendChild(pip);
    }
    els.pips.replaceChildren(frag);
    els.pips.setAttribute('aria-label', `${remaining} of ${limit} requests left`);
    els.pips.removeAttribute('aria-labelledby');
    els.quota.hidden = false;
  }

  // Update the panel from the latest response to arrive.
  function updateStatus(outcome) {
    const { status: code, headers, arrivedAt } = outcome;
    if (code === 0) {
      setNote(`Request #${outcome.n} failed: ${outcome.error}. The panel shows the last answer that had headers.`, 'warn');
      return;
    }
    if (code === 406) {
      setNote('406: this browser had no valid cookie yet. The server has just set one, so the next request counts.', 'warn');
      return;
    }

    const limit = intHeader(headers, 'X-RateLimit-Limit');
    const remaining = intHeader(headers, 'X-RateLimit-Remaining');
    const reset = intHeader(headers, 'X-RateLimit-Reset');
    const retry = intHeader(headers, 'Retry-After');

    if (limit === null) {
      // No limit headers: fail-open (200) or fail-closed (503).
      setNum(els.limit, null);
      setNum(els.remaining, null);
      setReset(null, arrivedAt);
      setRetryAfter(code === 503 ? retry : null, arrivedAt);
      startTimer();
      renderPips(null, null);
      if (code === 503) {
        setNote('503: limiter unavailable. The service fails closed while Redis is down or slow.', 'bad');
      } else if (code === 200) {
        setNote('limits not applied (limiter unavailable)', 'warn');
      } else {
        setNote(`HTTP ${code} without rate-limit headers.`, 'warn');
      }
      return;
    }

    setNum(els.limit, limit);
    setNum(els.remaining, remaining);
    setReset(reset, arrivedAt);
    setRetryAfter(code === 429 ? retry : null, arrivedAt);
    startTimer();
    renderPips(limit, remaining);

    if (code === 429) {
      setNote(`Blocked: all ${limit} requests of this window are spent. Wait for the window to reset.`, 'bad');
    } else if (code === 200) {
      setNote(remaining === 0
        ? 'Allowed, and that was the last one: the next request in this window will be blocked.'
        : `Allowed. ${remaining} more ${remaining === 1 ? 'request fits' : 'requests fit'} in this window.`, 'ok');
    } else {
      setNote(`HTTP ${code}.`, 'warn');
    }
  }

  // ---- the results -------------------------------------------------------

  const KINDS = {
    200: { cls: 'allowed', label: 'allowed' },
    429: { cls: 'blocked', label: 'blocked' },
    406: { cls: 'nocookie', label: 'no cookie yet — retrying sets one' },
    503: { cls: 'unavailable', label: 'limiter unavailable' },
  };

  function makeSlot(n) {
    const li = document.createElement('li');
    li.className = 'slot pending';
    li.dataset.n = String(n);

    const top = document.createElement('span');
    top.className = 'slot-top';
    const num = document.createElement('span');
    num.className = 'slot-num';
    num.textContent = `#${n}`;
    const time = document.createElement('span');
    time.className = 'slot-time';
    top.append(num, time);

    const code = document.createElement('span');
    code.className = 'slot-code';
    code.textContent = '···';

    const label = document.createElement('span');
    label.className = 'slot-label';
    label.textContent = 'waiting';

    li.append(top, code, label);
    return li;
  }

  function markSent(li, offsetMs) {
    li.classList.remove('pending');
    li.classList.add('inflight');
    li.querySelector('.slot-time').textContent = `+${fmtSeconds(offsetMs)} s`;
    li.querySelector('.slot-label').textContent = 'sending…';
  }

  function markLanded(li, outcome) {
    const code = outcome.status;
    let kind = KINDS[code];
    if (code === 0) kind = { cls: 'error', label: `network error${outcome.error ? ` (${outcome.error})` : ''}` };
    else if (!kind) kind = { cls: 'other', label: 'unexpected' };

    let label = kind.label;
    if (code === 200 && outcome.headers && outcome.headers.get('X-RateLimit-Limit') === null) {
      label = 'allowed — limits not applied';
    } else if (code === 200 || code === 429) {
      const rem = intHeader(outcome.headers, 'X-RateLimit-Remaining');
      if (rem !== null) label += ` · ${rem} left`;
    }

    li.className = `slot result ${kind.cls}`;
    li.dataset.status = String(code);
    li.querySelector('.slot-code').textContent = code === 0 ? 'ERR' : String(code);
    li.querySelector('.slot-label').textContent = label;
    li.setAttribute('aria-label', `Request ${outcome.n}: ${code === 0 ? 'network error' : `HTTP ${code}`}, ${label}`);
  }

  // ---- a run -------------------------------------------------------------

  const runner = {
    active: false,
    id: 0,
    timers: [],
  };

  async function ping() {
    const init = { credentials: 'same-origin', cache: 'no-store' };
    if (typeof AbortSignal !== 'undefined' && typeof AbortSignal.timeout === 'function') {
      init.signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    }
    const res = await fetch('/api/ping', init);
    const arrivedAt = performance.now();
    try { await res.text(); } catch (_) { /* the status and headers are what matter */ }
    return { status: res.status, headers: res.headers, arrivedAt };
  }

  function describeError(err) {
    if (err && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timed out';
    return 'no answer';
  }

  function startRun() {
    if (runner.active) return;
    const count = selectedCount();
    const spacing = spacingFor(count);
    const id = ++runner.id;
    runner.active = true;
    runner.timers = [];

    // Clear the previous run.
    const slots = [];
    const frag = document.createDocumentFragment();
    for (let i = 1; i <= count; i++) {
      const li = makeSlot(i);
      slots.push(li);
      frag.appendChild(li);
    }
    els.results.replaceChildren(frag);
    els.empty.hidden = true;
    const tally = { allowed: 0, blocked: 0, other: 0, landed: 0 };
    els.allowed.textContent = '0';
    els.blocked.textContent = '0';
    els.other.textContent = '0';
    els.progress.max = count;
    els.progress.value = 0;
    els.progress.textContent = `0 of ${count}`;

    els.send.disabled = true;
    els.send.textContent = 'Sending…';
    els.countSet.disabled = true;
    setState('running');

    const t0 = performance.now();

    const land = (n, outcome) => {
      if (id !== runner.id) return;
      outcome.n = n;
      markLanded(slots[n - 1], outcome);
      if (outcome.status === 200) tally.allowed++;
      else if (outcome.status === 429) tally.blocked++;
      else tally.other++;
      tally.landed++;
      els.allowed.textContent = String(tally.allowed);
      els.blocked.textContent = String(tally.blocked);
      els.other.textContent = String(tally.other);
      els.progress.value = tally.landed;
      els.progress.textContent = `${tally.landed} of ${count}`;
      // The latest response to arrive drives the panel.
      runner.lastArrival = outcome.arrivedAt;
      updateStatus(outcome);
      if (tally.landed === count) finishRun();
    };

    const sendOne = (n) => {
      if (id !== runner.id) return;
      markSent(slots[n - 1], performance.now() - t0);
      ping().then(
        (outcome) => land(n, outcome),
        (err) => land(n, { status: 0, headers: null, arrivedAt: performance.now(), error: describeError(err) }),
      );
    };

    // Each request is scheduled from the same start, so the spacing does not drift.
    for (let i = 0; i < count; i++) {
      const delay = Math.round(i * spacing);
      if (delay === 0) sendOne(i + 1);
      else runner.timers.push(window.setTimeout(() => sendOne(i + 1), delay));
    }
  }

  function finishRun() {
    runner.active = false;
    runner.timers = [];
    els.send.disabled = false;
    els.send.textContent = 'Send requests';
    els.countSet.disabled = false;
    setState('done');
    tick();
  }

  // ---- wiring ------------------------------------------------------------

  els.form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    startRun();
  });
  els.countSet.addEventListener('change', updatePace);

  updatePace();
  els.progress.max = selectedCount();
  els.progress.textContent = `0 of ${selectedCount()}`;
  setState('idle');

  if (autostart) startRun();
})();
