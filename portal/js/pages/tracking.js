// tracking.js - message tracking: find any message moat saw (#/tracking)
// and follow it (#/tracking/ID): its verdict, the symbols explained, each
// recipient's outcome and reply, and the timeline of events.

import {api, ApiError} from '../api.js';
import {badge, clear, emptyState, errorBox, field, fmtSize, fmtTime, h, loading, page, table} from '../ui.js';
import {addressInputs, localToMs, pager, scoreText, searchInputsOk, searchPath, select, some, symbolDescriptions, symbolsView,
        VERDICTS} from './quarantine.js';

const PAGE = 50;
const EMPTY = {sender: '', rcpt: '', subject: '', message_id: '', id: '', verdict: '', since: '', until: ''};

const state = {filters: {...EMPTY}, cursors: ['']};

function query(f, after) {
	return searchPath('tracking', {rcpt: f.rcpt.trim(), subject: f.subject.trim(),
	                               message_id: f.message_id.trim(), id: f.id.trim().toLowerCase(),
	                               verdict: f.verdict, since: localToMs(f.since),
	                               until: localToMs(f.until), limit: PAGE, after}, f.sender);
}

function searchForm(onSearch) {
	const f = state.filters;
	const inp = {
		...addressInputs(f),
		message_id: h('input', {name: 'message_id', value: f.message_id, placeholder: 'abc@mail.example.org',
		                        autocomplete: 'off'}),
		id: h('input', {name: 'id', value: f.id, placeholder: '16 hex digits', autocomplete: 'off', class: 'mono'}),
		verdict: select(VERDICTS, f.verdict, {name: 'verdict'}),
		since: h('input', {name: 'since', type: 'datetime-local', value: f.since}),
		until: h('input', {name: 'until', type: 'datetime-local', value: f.until}),
	};
	const status = h('div', {'aria-live': 'polite'});
	const form = h('form', {class: 'card filters', role: 'search', 'aria-label': 'Find messages'},
	               h('div', {class: 'filter-grid'},
	                 field('Sender', inp.sender), field('Recipient', inp.rcpt), field('Subject contains', inp.subject),
	                 field('Message-ID', inp.message_id), field('Queue id', inp.id), field('Verdict', inp.verdict),
	                 field('Received from', inp.since), field('Received before', inp.until)),
	               status,
	               h('div', {class: 'actions'},
	                 h('button', {class: 'primary', type: 'submit'}, 'Search'),
	                 h('button', {type: 'button', onclick: () => {
		                 state.filters = {...EMPTY};
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

function rcptSummary(rcpts) {
	if (!rcpts || !rcpts.length)
		return '–';
	return h('ul', {class: 'plain'}, rcpts.slice(0, 3).map((r) => h('li', null, h('span', {class: 'wrap'}, r.addr), ' ',
	                                                                badge(r.outcome))),
	         rcpts.length > 3 ? h('li', {class: 'muted'}, 'and ' + (rcpts.length - 3) + ' more') : null);
}

async function renderList(root) {
	page(root, 'Message tracking');
	const box = h('div');
	const reload = async () => {
		clear(box).append(loading());
		let res;
		try {
			res = await api('GET', query(state.filters, state.cursors[state.cursors.length - 1]));
		} catch (e) {
			clear(box).append(errorBox(e));
			return;
		}
		clear(box);
		const items = res.items || [];
		const any = Object.values(state.filters).some((v) => v);
		if (!items.length) {
			box.append(emptyState(any ? 'No message matches this search.' : 'moat has not seen any message yet.'),
			           ...some(pager(state, res.next, reload)));
			return;
		}
		box.append(table([
			{label: 'Received', class: 'nowrap hide-narrow', render: (m) => fmtTime(m.received_ms)},
			{label: 'Message', render: (m) => h('div', {class: 'msgcell'},
			                                   h('a', {class: 'subject', tabindex: '-1',
			                                           href: '#/tracking/' + encodeURIComponent(m.id)},
			                                     m.subject || '(no subject)'),
			                                   h('div', {class: 'muted small'}, 'From ', m.sender || '<>'),
			                                   h('div', {class: 'muted small show-narrow'}, fmtTime(m.received_ms), ' · to ',
			                                     (m.rcpts || []).map((r) => r.addr + ' (' + r.outcome + ')').join(', ')))},
			{label: 'Recipients', class: 'hide-narrow', render: (m) => rcptSummary(m.rcpts)},
			{label: 'Verdict', render: (m) => h('span', null, badge(m.verdict), ' ',
			                                   h('span', {class: 'muted small'}, scoreText(m.score)))},
		], items, {
			caption: items.length + (res.next ? '+' : '') + ' message' + (items.length === 1 ? '' : 's'),
			onRow: (m) => {
				location.hash = '#/tracking/' + encodeURIComponent(m.id);
			},
		}).el, ...some(pager(state, res.next, reload)));
	};
	root.append(searchForm((reset) => reset ? renderList(root) : reload()), box);
	await reload();
}

function kv(pairs) {
	return h('dl', {class: 'kv'}, pairs.filter(Boolean).map(([k, v]) => [h('dt', null, k),
	                                                                     h('dd', null, v === '' || v === undefined || v === null ? '–' : v)]));
}

const KIND_WORDS = {received: 'Received', verdict: 'Verdict', delivery: 'Delivery'};

function timeline(events) {
	if (!events || !events.length)
		return emptyState('No events recorded.');
	return h('ol', {class: 'timeline'}, events.map((ev) => h('li', {class: 'tl-' + ev.kind},
	                                                         h('time', {class: 'tl-time'}, fmtTime(ev.time_ms)),
	                                                         h('div', {class: 'tl-body'},
	                                                           h('strong', null, KIND_WORDS[ev.kind] || ev.kind),
	                                                           ev.outcome ? [' ', badge(ev.outcome)] : null,
	                                                           ev.rcpt ? h('span', {class: 'wrap'}, ' · ', ev.rcpt) : null,
	                                                           ev.text ? h('div', {class: 'tl-text mono'}, ev.text) : null))));
}

async function renderDetail(root, id) {
	const back = () => h('p', null, h('a', {href: '#/tracking'}, '← Message tracking'));
	clear(root).append(back(), loading());
	let m;
	try {
		m = await api('GET', 'tracking/' + encodeURIComponent(id));
	} catch (err) {
		page(root, 'Message', back(), errorBox(err.status === 404 ? new ApiError(404, 'moat has no record of message ' + id + '.') : err));
		return;
	}
	const descriptions = await symbolDescriptions();
	page(root, 'Message',
	     back(),
	     h('p', {class: 'subject-line'}, m.subject || '(no subject)'),
	     m.verdict === 'quarantine'
	             ? h('p', null, h('a', {class: 'button', href: '#/quarantine/' + encodeURIComponent(m.id)}, 'Open in the quarantine'))
	             : null,
	     h('div', {class: 'grid'},
	       h('section', {class: 'card', 'aria-label': 'Message'}, h('h2', null, 'Message'),
	         kv([['Received', fmtTime(m.received_ms)], ['Client', m.client_ip], ['HELO', m.helo],
	             ['Sender', m.sender || '<>'], ['From', m.from], ['Message-ID', m.message_id], ['Size', fmtSize(m.size)],
	             ['Queue id', h('span', {class: 'mono'}, m.id)]])),
	       h('section', {class: 'card', 'aria-label': 'Verdict'}, h('h2', null, 'Verdict'),
	         kv([['Verdict', badge(m.verdict)], ['Score', scoreText(m.score)], ['Reason', m.reason],
	             ['Decided', fmtTime(m.verdict_ms)]]))),
	     h('section', {class: 'card', 'aria-label': 'Recipients'}, h('h2', null, 'Recipients'),
	       table([
		       {label: 'Recipient', render: (r) => r.addr},
		       {label: 'Outcome', render: (r) => badge(r.outcome)},
		       {label: 'Reply', render: (r) => r.reply ? h('span', {class: 'mono'}, r.reply) : ''},
		       {label: 'When', class: 'nowrap', render: (r) => fmtTime(r.time_ms)},
	       ], m.rcpts || [], {empty: 'No recipients recorded.', stack: true}).el),
	     h('section', {class: 'card', 'aria-label': 'Timeline'}, h('h2', null, 'Timeline'),
	       timeline(m.events),
	       m.truncated ? h('p', {class: 'notice'}, 'Only the first events are shown.') : null),
	     h('section', {class: 'card', 'aria-label': 'Symbols'}, h('h2', null, 'Symbols'),
	       symbolsView(m.symbols, descriptions)));
}

export async function render(root, params) {
	if (params[0])
		return renderDetail(root, params[0]);
	return renderList(root);
}
