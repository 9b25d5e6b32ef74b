// dashboard.js - the day at a glance: messages per hour by outcome over
// the last 24 hours, top threats and senders, the delivery queue and a
// few counters since moatd started.

import {api, ApiError} from '../api.js';
import {applyWidths, barChart, clear, emptyState, errorBox, fmtTime, h, loading, page, topList} from '../ui.js';

const SERIES = [
	{key: 'deliver', label: 'Delivered'},
	{key: 'quarantine', label: 'Quarantined'},
	{key: 'reject', label: 'Rejected'},
	{key: 'tempfail', label: 'Deferred (451)'},
	{key: 'none', label: 'No verdict'},
];

const pad = (n) => String(n).padStart(2, '0');

function stat(label, value, hint, href) {
	const v = value === undefined || value === null ? '–' : String(value);
	return h('div', {class: 'card statcard'},
	         h('div', {class: 'muted small'}, label),
	         href ? h('a', {class: 'stat', href}, v) : h('div', {class: 'stat'}, v),
	         hint ? h('div', {class: 'muted small'}, hint) : null);
}

// A top list's items as {label, count}, whatever the server names them.
function topItems(list) {
	if (!Array.isArray(list))
		return null;
	return list.map((x) => {
		if (Array.isArray(x))
			return {label: String(x[0]), count: Number(x[1]) || 0};
		const label = x.label ?? x.name ?? x.symbol ?? x.sender ?? x.addr ?? x.key ?? x.value ?? '';
		return {label: label === '' ? '<>' : String(label), count: Number(x.count ?? x.n ?? x.total) || 0};
	}).filter((x) => x.count > 0);
}

function topBox(list, title, empty) {
	const items = topItems(list);
	if (items === null)
		return h('figure', {class: 'chart-box'}, h('figcaption', null, title),
		         emptyState('This moatd does not report ' + title.toLowerCase() + '.'));
	return topList(items, title, empty);
}

async function load(box, stamp) {
	clear(box).append(loading());
	let s, held = null;
	try {
		[s, held] = await Promise.all([
			api('GET', 'stats'),
			api('GET', 'quarantine?state=held&limit=100').catch((e) => {
				if (e instanceof ApiError && e.status === 401)
					throw e;
				return null;
			}),
		]);
	} catch (e) {
		clear(box).append(errorBox(e));
		return;
	}
	clear(box);
	stamp.textContent = 'Updated ' + fmtTime(Date.now());
	const hourly = s.hourly || [];
	const totals = {};
	for (const se of SERIES)
		totals[se.key] = hourly.reduce((n, x) => n + (x[se.key] || 0), 0);
	const all = SERIES.reduce((n, se) => n + totals[se.key], 0);
	const c = s.counters || {};
	const q = s.queue;
	const heldCount = held ? String(held.items.length) + (held.next ? '+' : '') : null;

	box.classList.add('dash');
	box.append(
		h('section', {class: 'stats', 'aria-label': 'Last 24 hours'},
		  stat('Messages, last 24 h', all),
		  stat('Delivered', totals.deliver),
		  stat('Quarantined', totals.quarantine),
		  stat('Rejected', totals.reject),
		  stat('Held in quarantine now', heldCount, held ? null : 'not available', '#/quarantine')),
		all ? barChart(hourly.map((x) => {
			const d = new Date(x.hour_ms);
			return {label: pad(d.getHours()) + ':00', values: x};
		}), SERIES, {title: 'Messages per hour by outcome, last 24 hours', height: 200})
		    : h('figure', {class: 'chart-box'}, h('figcaption', null, 'Messages per hour by outcome, last 24 hours'),
		        emptyState('No mail in the last 24 hours.')),
		h('div', {class: 'grid'},
		  topBox(s.top_threats, 'Top threats', 'No threats in the last 24 hours.'),
		  topBox(s.top_senders, 'Top senders', 'No senders in the last 24 hours.')),
		h('h2', null, 'Delivery queue'),
		q ? h('section', {class: 'stats', 'aria-label': 'Delivery queue'},
		      stat('Messages queued', q.messages),
		      stat('Recipients pending', q.recipients_pending),
		      stat('Deferred', q.deferred),
		      stat('Held', q.held),
		      stat('Connections', q.connections))
		  : h('div', {class: 'notice'}, 'The delivery queue did not answer; its numbers are not available.'),
		h('h2', null, 'Since moatd started'),
		h('section', {class: 'stats', 'aria-label': 'Since moatd started'},
		  stat('SMTP connections', c.smtp_connections),
		  stat('Messages accepted', c.smtp_messages_accepted),
		  stat('Recipients refused', c.smtp_rcpt_rejected),
		  stat('Recipients delivered', c.delivery_delivered),
		  stat('Recipients bounced', c.delivery_bounced)));
	applyWidths(box);
	// where the chart scrolls (phones), show the latest hours first
	for (const sc of box.querySelectorAll('.chart-scroll'))
		sc.scrollLeft = sc.scrollWidth;
}

export async function render(root) {
	const box = h('div');
	const stamp = h('span', {class: 'muted small', 'aria-live': 'polite'});
	page(root, 'Dashboard',
	     h('div', {class: 'actions toolbar'}, h('button', {type: 'button', id: 'dash-refresh', onclick: () => load(box, stamp)}, 'Refresh'), stamp),
	     box);
	await load(box, stamp);
}
