// quarantine.js - the central quarantine: a filtered, paged list with
// bulk release and delete (#/quarantine), and one held message
// (#/quarantine/ID): envelope, verdict, the symbols explained, the safe
// preview (text only: the message's HTML is never rendered), download,
// release to chosen recipients, delete. Everything from the message goes
// in as text (ui.js h()).

import {api, ApiError, qs} from '../api.js';
import {applyWidths, askDialog, badge, clear, emptyState, errorBox, field, fmtSize, fmtTime, h,
        loading, page, table, toast} from '../ui.js';

const STATES = [['held', 'Held'], ['released', 'Released'], ['deleted', 'Deleted'], ['expired', 'Expired'],
                ['', 'Any state']];
export const VERDICTS = [['', 'Any verdict'], ['quarantine', 'Quarantine'], ['reject', 'Reject'],
                         ['deliver', 'Deliver'], ['tempfail', 'Temporary failure'], ['none', 'None']];
const PAGE = 50;

// --- shared with tracking.js ---

// The symbols line (scan_result_symbols: NAME(score)[detail],NAME(score)...)
// as [{name, score, detail}]. A detail is the sender's text and may hold
// ',' and ']': it ends at the last ']' before the next ",NAME(number)".
export function parseSymbols(line) {
	const out = [];
	if (!line)
		return out;
	const head = /([A-Z][A-Z0-9_]*)\((-?[0-9]+(?:\.[0-9]+)?)\)/y;
	const next = /\],(?=[A-Z][A-Z0-9_]*\(-?[0-9]+(?:\.[0-9]+)?\)(?:\[|,|$))/g;
	let i = 0;
	while (i < line.length) {
		head.lastIndex = i;
		const m = head.exec(line);
		if (!m) {
			// not in the expected form (cut with "..."): keep the rest as it is
			out.push({name: line.slice(i), score: null, detail: ''});
			break;
		}
		let j = head.lastIndex, detail = '';
		if (line[j] === '[') {
			next.lastIndex = j;
			const n = next.exec(line);
			const end = n ? n.index : (line.endsWith(']') ? line.length - 1 : line.length);
			detail = line.slice(j + 1, end);
			j = n ? n.index + 2 : line.length;
		} else if (line[j] === ',') {
			j++;
		} else if (j < line.length) {
			detail = line.slice(j);
			j = line.length;
		}
		out.push({name: m[1], score: Number(m[2]), detail});
		i = j;
	}
	return out;
}

// Every symbol's description and forced outcomes (GET /api/v1/symbols:
// {symbols: [{name, score, flags, description}]}) as a Map name ->
// {description, flags}; empty when this moatd does not say. Fetched once.
let symbolInfo = null;
export async function symbolDescriptions() {
	if (symbolInfo)
		return symbolInfo;
	const map = new Map();
	try {
		const r = await api('GET', 'symbols');
		for (const s of (r && r.symbols) || [])
			if (s && s.name)
				map.set(s.name, {description: s.description || '', flags: s.flags || []});
		symbolInfo = map;
	} catch (e) {
		if (e instanceof ApiError && e.status === 401)
			throw e;
		/* an older moatd without /symbols: names alone */
	}
	return map;
}

function meaning(info) {
	if (!info)
		return '';
	const forces = info.flags.filter((f) => f !== 'malware');
	return [info.description,
	        info.flags.includes('malware') ? h('div', {class: 'muted small'}, 'Malware: handled as malware_action says.') : null,
	        forces.length ? h('div', {class: 'muted small'}, 'Forces ' + forces.join(', ') + ' whatever the score.') : null];
}

// The meaning column only when this moatd describes its symbols.
export function symbolsView(line, descriptions) {
	const syms = parseSymbols(line);
	if (!syms.length)
		return emptyState('No symbols: no check had anything to say about this message.');
	return table([
		{label: 'Symbol', render: (s) => h('span', {class: 'mono'}, s.name)},
		{label: 'Score', class: 'num', render: (s) => s.score === null ? '–' : s.score.toFixed(2)},
		descriptions.size ? {label: 'Meaning', render: (s) => meaning(descriptions.get(s.name))} : null,
		{label: 'Detail', render: (s) => s.detail ? h('span', {class: 'mono'}, s.detail) : ''},
	].filter(Boolean), syms, {stack: true}).el;
}

// datetime-local value <-> ms since the epoch (local time).
export function localToMs(v) {
	if (!v)
		return '';
	const t = new Date(v).getTime();
	return Number.isFinite(t) ? t : '';
}

export function msToLocal(ms) {
	if (!ms)
		return '';
	const d = new Date(Number(ms) - new Date(Number(ms)).getTimezoneOffset() * 60000);
	return d.toISOString().slice(0, 16);
}

export function select(options, value, attrs) {
	return h('select', attrs, options.map(([v, l]) => h('option', {value: v, selected: v === value}, l)));
}

// Nodes for Element.append(), which would write null as "null".
export function some(...nodes) {
	return nodes.filter((n) => n !== null && n !== undefined && n !== false);
}

export function scoreText(n) {
	return typeof n === 'number' ? n.toFixed(2) : '–';
}

// A pager for keyset paging: {cursors: [after of each page shown], next}.
export function pager(state, next, go) {
	const n = state.cursors.length;
	if (n === 1 && !next)
		return null;
	return h('nav', {class: 'pager', 'aria-label': 'Pages'},
	         h('button', {type: 'button', disabled: n <= 1, onclick: () => {
		         state.cursors.pop();
		         go();
	         }}, '← Newer'),
	         h('span', {class: 'muted'}, 'Page ' + n),
	         h('button', {type: 'button', disabled: !next, onclick: () => {
		         state.cursors.push(next);
		         go();
	         }}, 'Older →'));
}

// --- the list ---

const state = {
	filters: {state: 'held', sender: '', rcpt: '', subject: '', verdict: '', since: '', until: ''},
	cursors: [''],
	results: null, // the last bulk action's results, shown once
};

// A search's path: params, and the sender ("<>" asks for the null sender, the API's sender="").
export function searchPath(path, params, sender) {
	let s = qs(params);
	sender = (sender || '').trim();
	if (sender)
		s += (s ? '&' : '?') + 'sender=' + encodeURIComponent(sender === '<>' ? '' : sender);
	return path + s;
}

// The sender, recipient and subject inputs both searches have.
export function addressInputs(f) {
	return {
		sender: h('input', {name: 'sender', value: f.sender, placeholder: 'a@example.org, @example.org or <>',
		                    autocomplete: 'off'}),
		rcpt: h('input', {name: 'rcpt', value: f.rcpt, placeholder: 'a@example.test or @example.test',
		                  autocomplete: 'off'}),
		subject: h('input', {name: 'subject', value: f.subject, type: 'search', placeholder: 'at least 3 characters',
		                     autocomplete: 'off'}),
	};
}

// What the API would refuse of a search's inputs, said at the field: false then.
export function searchInputsOk(inp, status) {
	const bad = (field, text) => {
		status.append(errorBox(new ApiError(400, text, field)));
		inp[field].focus();
		return false;
	};
	const subj = inp.subject.value.trim();
	if (subj && subj.length < 3)
		return bad('subject', 'Search a subject by at least 3 characters.');
	const id = inp.id ? inp.id.value.trim() : '';
	if (id && !/^[0-9a-fA-F]{16}$/.test(id))
		return bad('id', 'A queue id is 16 hexadecimal digits.');
	return true;
}

function query(f, after) {
	return searchPath('quarantine', {state: f.state, rcpt: f.rcpt.trim(), subject: f.subject.trim(),
	                                 verdict: f.verdict, since: localToMs(f.since),
	                                 until: localToMs(f.until), limit: PAGE, after}, f.sender);
}

function filterForm(onSearch) {
	const f = state.filters;
	const inp = {
		state: select(STATES, f.state, {name: 'state'}),
		...addressInputs(f),
		verdict: select(VERDICTS, f.verdict, {name: 'verdict'}),
		since: h('input', {name: 'since', type: 'datetime-local', value: f.since}),
		until: h('input', {name: 'until', type: 'datetime-local', value: f.until}),
	};
	const status = h('div', {'aria-live': 'polite'});
	const form = h('form', {class: 'card filters', role: 'search', 'aria-label': 'Filter the quarantine'},
	               h('div', {class: 'filter-grid'},
	                 field('State', inp.state), field('Sender', inp.sender), field('Recipient', inp.rcpt),
	                 field('Subject contains', inp.subject), field('Verdict', inp.verdict),
	                 field('Received from', inp.since), field('Received before', inp.until)),
	               status,
	               h('div', {class: 'actions'},
	                 h('button', {class: 'primary', type: 'submit'}, 'Search'),
	                 h('button', {type: 'button', onclick: () => {
		                 state.filters = {state: 'held', sender: '', rcpt: '', subject: '', verdict: '', since: '', until: ''};
		                 state.cursors = [''];
		                 onSearch(true);
	                 }}, 'Reset')));
	form.addEventListener('submit', (e) => {
		e.preventDefault();
		clear(status);
		if (!searchInputsOk(inp, status))
			return;
		for (const k of Object.keys(inp))
			state.filters[k] = inp[k].value;
		state.cursors = [''];
		onSearch(false);
	});
	return form;
}

function filtered() {
	const f = state.filters;
	return !!(f.sender || f.rcpt || f.subject || f.verdict || f.since || f.until);
}

function addrList(list) {
	if (!list || !list.length)
		return '–';
	const shown = list.slice(0, 3).join(', ');
	return list.length > 3 ? shown + ' and ' + (list.length - 3) + ' more' : shown;
}

// At phone width the time, state and size move into the message cell.
function listColumns() {
	return [
		{label: 'Received', class: 'nowrap hide-narrow', render: (e) => fmtTime(e.received_ms)},
		{label: 'Message', render: (e) => h('div', {class: 'msgcell'},
		                                    h('a', {class: 'subject', href: '#/quarantine/' + encodeURIComponent(e.id),
		                                            tabindex: '-1'}, e.subject || '(no subject)'),
		                                    h('div', {class: 'muted small'}, 'From ', e.sender || '<>', ' to ',
		                                      addrList(e.rcpts)),
		                                    h('div', {class: 'muted small show-narrow'}, fmtTime(e.received_ms), ' · ',
		                                      e.state, ' · ', fmtSize(e.size)))},
		{label: 'Verdict', render: (e) => h('span', null, badge(e.verdict), ' ',
		                                    h('span', {class: 'muted small'}, scoreText(e.score)))},
		{label: 'State', class: 'hide-narrow', render: (e) => badge(e.state)},
		{label: 'Size', class: 'num hide-narrow', render: (e) => fmtSize(e.size)},
	];
}

async function renderList(root) {
	page(root, 'Quarantine');
	const results = h('div', {class: 'results', 'aria-live': 'polite'});
	const box = h('div');
	const reload = async (focusList) => {
		clear(box).append(loading());
		let res;
		try {
			res = await api('GET', query(state.filters, state.cursors[state.cursors.length - 1]));
		} catch (e) {
			clear(box).append(errorBox(e));
			return;
		}
		showPage(res);
		if (focusList) {
			const first = box.querySelector('tbody tr');
			if (first)
				first.focus();
		}
	};
	const showPage = (res) => {
		clear(box);
		const items = res.items || [];
		if (!items.length) {
			box.append(emptyState(
				filtered() ? 'No message matches these filters.'
				           : state.filters.state === 'held' ? 'Nothing is held in the quarantine.'
				                                            : 'No message in this state.'),
			           ...some(pager(state, res.next, reload)));
			return;
		}
		const t = table(listColumns(), items, {
			select: true,
			caption: items.length + (res.next ? '+' : '') + ' message' + (items.length === 1 ? '' : 's') +
			         (state.filters.state ? ' (' + state.filters.state + ')' : ''),
			onRow: (e) => {
				location.hash = '#/quarantine/' + encodeURIComponent(e.id);
			},
		});
		const count = h('span', {class: 'muted', 'aria-live': 'polite'}, 'None selected');
		const relBtn = h('button', {type: 'button', class: 'primary', disabled: true}, 'Release selected…');
		const delBtn = h('button', {type: 'button', class: 'danger', disabled: true}, 'Delete selected…');
		const sync = () => {
			const n = t.selected().length;
			count.textContent = n ? n + ' selected' : 'None selected';
			relBtn.disabled = delBtn.disabled = n === 0;
		};
		t.el.addEventListener('change', sync);
		relBtn.addEventListener('click', () => bulk('release', t.selected(), results, reload));
		delBtn.addEventListener('click', () => bulk('delete', t.selected(), results, reload));
		box.append(h('div', {class: 'actions bulk'}, relBtn, delBtn, count), t.el, ...some(pager(state, res.next, reload)));
	};
	root.append(filterForm((reset) => {
		if (reset)
			renderList(root);
		else
			reload(false);
	}), results, box);
	if (state.results) {
		results.append(state.results);
		state.results = null;
	}
	await reload(false);
}

const STATUS_WORDS = {
	ok: {release: 'released', delete: 'deleted'},
	already: {release: 'was already released', delete: 'was already deleted'},
	not_found: 'no such quarantined message',
	conflict: 'no longer held (released, deleted or expired meanwhile)',
	invalid: 'not a valid request',
	malware: 'not released: the malware scan found malware',
	tempfail: 'not released: the malware scanner is unavailable; try again later',
	gone: 'the message file is missing',
	error: 'failed inside moat',
};

// One action result in words (status, the API's message, the list change).
export function resultWords(action, r) {
	let w = STATUS_WORDS[r.status] || r.status || 'unknown answer';
	if (typeof w === 'object')
		w = w[action];
	const parts = [w.charAt(0).toUpperCase() + w.slice(1)];
	const msg = r.error || r.message;
	if (msg && r.status !== 'ok' && msg !== r.status)
		parts.push('(moat says: ' + msg + ')');
	if (r.allowed_sender)
		parts.push('The sender is now on the allow list.');
	if (r.blocked_sender)
		parts.push('The sender is now on the block list.');
	return parts.join(' ');
}

async function bulk(action, rows, results, reload) {
	if (!rows.length)
		return;
	const release = action === 'release';
	const n = rows.length + ' message' + (rows.length === 1 ? '' : 's');
	const noRescan = h('input', {type: 'checkbox', id: 'bulk-norescan'});
	const list = h('input', {type: 'checkbox', id: 'bulk-list'});
	const content = [
		h('p', null, release ? 'Release ' + n + ' to all their recipients?'
		                     : 'Delete ' + n + ' for good? This cannot be undone.'),
		h('ul', {class: 'pick-list'}, rows.slice(0, 10).map((e) => h('li', null, e.subject || '(no subject)',
		                                                               h('span', {class: 'muted'}, ' from ', e.sender || '<>')))),
		rows.length > 10 ? h('p', {class: 'muted'}, 'and ' + (rows.length - 10) + ' more') : null,
		release ? h('label', {class: 'check'}, noRescan, 'Release without scanning for malware again') : null,
		h('label', {class: 'check'}, list,
		  release ? 'Also put each sender on the allow list of its domain'
		          : 'Also put each sender on the block list of its domain'),
	];
	const ok = await askDialog(release ? 'Release messages' : 'Delete messages', content,
	                           {ok: release ? 'Release ' + n : 'Delete ' + n, danger: !release});
	if (!ok)
		return;
	const body = {action, ids: rows.map((e) => e.id)};
	if (release) {
		body.rescan = !noRescan.checked;
		body.allow_sender = list.checked;
	} else {
		body.block_sender = list.checked;
	}
	clear(results);
	let res;
	try {
		res = await api('POST', 'quarantine/batch', body);
	} catch (e) {
		results.append(errorBox(e));
		return;
	}
	const byId = new Map(rows.map((e) => [e.id, e]));
	const okCount = res.results.filter((r) => r.status === 'ok' || r.status === 'already').length;
	const failed = res.results.length - okCount;
	const panel = h('section', {class: 'card', 'aria-label': 'Results'},
	                h('div', {class: failed ? 'error' : 'success', role: failed ? 'alert' : 'status'},
	                  (release ? 'Released ' : 'Deleted ') + okCount + ' of ' + res.results.length +
	                  (failed ? '; ' + failed + ' failed.' : '.')),
	                h('ul', {class: 'result-list'},
	                  res.results.map((r) => h('li', null, badge(r.status, r.status === 'ok' || r.status === 'already' ? 'ok' : 'failed'), ' ',
	                                           h('span', {class: 'wrap'}, (byId.get(r.id) || {}).subject || r.id), ': ',
	                                           resultWords(action, r)))),
	                h('button', {type: 'button', class: 'link', onclick: (e) => e.target.closest('section').remove()}, 'Dismiss'));
	results.append(panel);
	toast((release ? 'Released ' : 'Deleted ') + okCount + ' of ' + res.results.length, failed ? 'error' : 'ok');
	await reload(false);
}

// --- one message ---

function kv(pairs) {
	return h('dl', {class: 'kv'}, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k),
	                                                                     h('dd', null, v === '' || v === undefined || v === null ? '–' : v)]));
}

function previewView(p) {
	if (!p)
		return null;
	const parts = [];
	if (p.error)
		parts.push(h('div', {class: 'notice'}, 'moat could not read this message as MIME: ' + p.error));
	parts.push(kv([['Subject', p.subject], ['From', p.from], ['To', p.to], p.cc ? ['Cc', p.cc] : null,
	               ['Date', p.date], ['Message-ID', p.message_id]]));
	if (p.text) {
		parts.push(h('h3', null, 'Text'), h('pre', {class: 'body-text', tabindex: '0', 'aria-label': 'Message text'}, p.text));
	}
	if (p.html_text) {
		parts.push(h('h3', null, p.text ? 'HTML part, as text' : 'Text (from the HTML part)'),
		           h('p', {class: 'muted small'}, 'The HTML is never rendered: this is its text, links written out.'),
		           h('pre', {class: 'body-text', tabindex: '0', 'aria-label': 'HTML part as text'}, p.html_text));
	}
	if (!p.text && !p.html_text)
		parts.push(h('p', {class: 'muted'}, 'The message has no text part.'));
	if (p.links && p.links.length) {
		parts.push(h('h3', null, 'Links (' + p.links.length + ')'),
		           h('p', {class: 'muted small'}, 'Shown as text, not clickable.'),
		           table([
			           {label: 'Link text', render: (l) => l.text},
			           {label: 'Goes to', render: (l) => h('span', {class: 'mono'}, l.href)},
		           ], p.links, {stack: true}).el);
	}
	parts.push(h('h3', null, 'Attachments' + (p.attachments && p.attachments.length ? ' (' + p.attachments.length + ')' : '')));
	if (p.attachments && p.attachments.length) {
		parts.push(table([
			{label: 'File name', render: (a) => a.filename || h('span', {class: 'muted'}, '(no name)')},
			{label: 'Type', render: (a) => h('span', {class: 'mono'}, a.content_type)},
			{label: 'Size', class: 'num', render: (a) => fmtSize(a.size)},
			{label: 'SHA-256', render: (a) => h('span', {class: 'mono hash'}, a.sha256)},
		], p.attachments, {stack: true}).el);
	} else {
		parts.push(h('p', {class: 'muted'}, 'No attachments.'));
	}
	if (p.headers && p.headers.length) {
		parts.push(h('details', {class: 'headers'},
		             h('summary', null, 'All header fields (' + p.headers.length + ')'),
		             table([
			             {label: 'Field', class: 'nowrap', render: (x) => h('span', {class: 'mono'}, x.name)},
			             {label: 'Value', render: (x) => h('span', {class: 'mono'}, x.value)},
		             ], p.headers, {stack: true}).el));
	}
	if (p.truncated)
		parts.push(h('p', {class: 'notice'}, 'The preview is cut short: the message is longer than what moat shows.'));
	return parts;
}

async function renderDetail(root, id) {
	clear(root).append(h('p', null, h('a', {href: '#/quarantine'}, '← Quarantine')), loading());
	let e;
	try {
		e = await api('GET', 'quarantine/' + encodeURIComponent(id));
	} catch (err) {
		page(root, 'Quarantined message', h('p', null, h('a', {href: '#/quarantine'}, '← Quarantine')),
		     errorBox(err.status === 404 ? new ApiError(404, 'No quarantined message ' + id + '.') : err));
		return;
	}
	const [preview, descriptions] = await Promise.all([
		api('GET', 'quarantine/' + encodeURIComponent(id) + '/preview').catch((err) => ({failed: err})),
		symbolDescriptions(),
	]);
	const status = h('div', {class: 'action-status', 'aria-live': 'polite'});
	const held = e.state === 'held';
	const actions = h('div', {class: 'actions'},
	                  held ? h('button', {type: 'button', class: 'primary', id: 'q-release',
	                                      onclick: () => releaseOne(e, status, root)}, 'Release…') : null,
	                  held ? h('button', {type: 'button', class: 'danger', id: 'q-delete',
	                                      onclick: () => deleteOne(e, status, root)}, 'Delete…') : null,
	                  held ? h('a', {class: 'button', id: 'q-download', download: e.id + '.eml',
	                                 href: '/api/v1/quarantine/' + encodeURIComponent(e.id) + '/download'},
	                           'Download .eml') : null);
	page(root, 'Quarantined message',
	     h('p', null, h('a', {href: '#/quarantine'}, '← Quarantine')),
	     h('p', {class: 'subject-line'}, e.subject || '(no subject)'),
	     held ? null : h('p', {class: 'notice'}, 'This message is ' + e.state + (e.state_by ? ' (by ' + e.state_by + ', ' + fmtTime(e.state_ms) + ')' : '') + '.'),
	     actions, status,
	     h('div', {class: 'grid'},
	       h('section', {class: 'card', 'aria-label': 'Envelope'}, h('h2', null, 'Envelope'),
	         kv([['Received', fmtTime(e.received_ms)], ['Sender', e.sender || '<>'],
	             ['Recipients', e.rcpts && e.rcpts.length ? h('ul', {class: 'plain'}, e.rcpts.map((r) => h('li', null, r))) : '–'],
	             ['From', e.from], ['Message-ID', e.message_id], ['Domain', e.domain], ['Size', fmtSize(e.size)],
	             ['Queue id', h('span', {class: 'mono'}, e.id)]])),
	       h('section', {class: 'card', 'aria-label': 'Verdict'}, h('h2', null, 'Verdict'),
	         kv([['Verdict', badge(e.verdict)], ['Score', scoreText(e.score)], ['State', badge(e.state)],
	             e.state_by ? ['Changed by', e.state_by] : null, e.state_ms ? ['Changed', fmtTime(e.state_ms)] : null,
	             ['Tracking', h('a', {href: '#/tracking/' + encodeURIComponent(e.id)}, 'Timeline')]]))),
	     h('section', {class: 'card', 'aria-label': 'Why it was held'}, h('h2', null, 'Why it was held'),
	       symbolsView(e.symbols, descriptions)),
	     h('section', {class: 'card preview', 'aria-label': 'Preview'}, h('h2', null, 'Preview'),
	       !preview.failed ? previewView(preview)
	       : preview.failed.status === 410 && !held
	               ? h('p', {class: 'muted'}, 'The message itself is no longer kept now that it is ' + e.state + '.')
	               : errorBox(preview.failed.status === 410
	                                  ? new ApiError(410, 'The message file is missing: there is nothing to preview.')
	                                  : preview.failed)));
	applyWidths(root);
}

async function releaseOne(e, status, root) {
	const boxes = (e.rcpts || []).map((r) => h('input', {type: 'checkbox', checked: true, value: r}));
	const noRescan = h('input', {type: 'checkbox', id: 'rel-norescan'});
	const allow = h('input', {type: 'checkbox', id: 'rel-allow'});
	const content = [
		h('p', null, 'Release “', h('span', {class: 'wrap'}, e.subject || '(no subject)'), '” to:'),
		h('fieldset', {class: 'pick'}, h('legend', null, 'Recipients'),
		  boxes.map((b) => h('label', {class: 'check'}, b, h('span', {class: 'wrap'}, b.value)))),
		h('label', {class: 'check'}, noRescan, 'Release without scanning for malware again'),
		h('label', {class: 'check'}, allow, h('span', {class: 'wrap'}, 'Put the sender ', e.sender || '<>',
		                                      ' on the allow list of ', e.domain)),
	];
	const ok = await askDialog('Release message', content, {
		ok: 'Release',
		check: () => boxes.length && !boxes.some((b) => b.checked) ? 'Choose at least one recipient.' : null,
	});
	if (!ok)
		return;
	const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
	const body = {rescan: !noRescan.checked, allow_sender: allow.checked};
	if (chosen.length < boxes.length)
		body.rcpts = chosen;
	await act(e, 'release', body, status, root,
	          'Released to ' + (body.rcpts ? chosen.join(', ') : 'all recipients') + '.');
}

async function deleteOne(e, status, root) {
	const block = h('input', {type: 'checkbox', id: 'del-block'});
	const ok = await askDialog('Delete message', [
		h('p', null, 'Delete “', h('span', {class: 'wrap'}, e.subject || '(no subject)'), '” for good? This cannot be undone.'),
		h('label', {class: 'check'}, block, h('span', {class: 'wrap'}, 'Put the sender ', e.sender || '<>',
		                                      ' on the block list of ', e.domain)),
	], {ok: 'Delete', danger: true});
	if (!ok)
		return;
	await act(e, 'delete', {block_sender: block.checked}, status, root, 'Deleted.');
}

async function act(e, action, body, status, root, done) {
	clear(status).append(loading());
	let r;
	try {
		r = await api('POST', 'quarantine/' + encodeURIComponent(e.id) + '/' + action, body);
	} catch (err) {
		const words = err.status === 409 ? 'Not done: ' : err.status === 503 ? 'Not done, try again later: ' : 'Failed: ';
		clear(status).append(errorBox(new ApiError(err.status, words + err.message)));
		return;
	}
	let text = r.status === 'ok' ? done : resultWords(action, r);
	if (r.status === 'ok' && r.allowed_sender)
		text += ' The sender is now on the allow list.';
	if (r.status === 'ok' && r.blocked_sender)
		text += ' The sender is now on the block list.';
	await renderDetail(root, e.id);
	const s = root.querySelector('.action-status');
	if (s)
		s.append(h('div', {class: 'success', role: 'status'}, text));
	toast(text);
}

export async function render(root, params) {
	if (params[0])
		return renderDetail(root, params[0]);
	return renderList(root);
}
