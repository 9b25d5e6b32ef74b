// ui.js - building blocks of the portal's pages. Every string goes into
// the page as text (textContent, attribute values): nothing here parses
// HTML, so a subject or a file name an attacker chose stays text.

const SVG = 'http://www.w3.org/2000/svg';

// h('button', {class: 'x', onclick: fn, disabled: true}, 'text', child...)
// Attributes: class, on<event> (a function), dataset ({k: v}), booleans,
// anything else through setAttribute. Children: nodes, strings (as text),
// arrays, null/false (left out).
export function h(tag, attrs, ...children) {
	const el = document.createElement(tag);
	setAttrs(el, attrs);
	append(el, children);
	return el;
}

function setAttrs(el, attrs) {
	for (const [k, v] of Object.entries(attrs || {})) {
		if (v === undefined || v === null || v === false)
			continue;
		if (k.startsWith('on') && typeof v === 'function')
			el.addEventListener(k.slice(2), v);
		else if (k === 'dataset')
			Object.assign(el.dataset, v);
		else if (k === 'value' && 'value' in el)
			el.value = v;
		else if (k === 'checked' && 'checked' in el)
			el.checked = !!v;
		else
			el.setAttribute(k, v === true ? '' : String(v));
	}
}

function append(el, children) {
	for (const c of children.flat(Infinity)) {
		if (c === null || c === undefined || c === false)
			continue;
		el.append(c instanceof Node ? c : document.createTextNode(String(c)));
	}
}

export function svg(tag, attrs, ...children) {
	const el = document.createElementNS(SVG, tag);
	for (const [k, v] of Object.entries(attrs || {}))
		if (v !== undefined && v !== null)
			el.setAttribute(k, String(v));
	append(el, children);
	return el;
}

export function clear(el) {
	while (el.firstChild)
		el.removeChild(el.firstChild);
	return el;
}

// Replace el's children with children (as h() takes them); returns el.
export function fill(el, ...children) {
	clear(el);
	append(el, children);
	return el;
}

// Replace the page's content; returns the container.
export function page(root, title, ...children) {
	clear(root);
	document.title = title + ' · moat';
	root.append(h('h1', null, title));
	append(root, children);
	return root;
}

export function toast(text, kind = 'ok') {
	const box = document.getElementById('toasts');
	const t = h('div', {class: 'toast ' + kind, role: kind === 'error' ? 'alert' : null}, text);
	box.append(t);
	setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4000);
}

// An error as a visible block (role=alert), with the field it names.
export function errorBox(err) {
	const msg = err && err.message ? err.message : String(err);
	return h('div', {class: 'error', role: 'alert'}, msg,
	         err && err.field ? h('span', {class: 'muted'}, ' (' + err.field + ')') : null);
}

export function emptyState(text, ...more) {
	return h('div', {class: 'empty'}, h('p', null, text), more);
}

export function loading() {
	return h('p', {class: 'muted', 'aria-busy': 'true'}, 'Loading…');
}

// A modal question; resolves true when confirmed.
export function confirmDialog(text, ok = 'OK', danger = false) {
	return new Promise((resolve) => {
		const d = h('dialog', {class: 'dialog', 'aria-label': text});
		const opener = document.activeElement;
		const done = (v) => {
			d.close();
			d.remove();
			if (opener && opener.isConnected)
				opener.focus();
			resolve(v);
		};
		d.append(h('p', null, text),
		         h('div', {class: 'actions'},
		           h('button', {class: danger ? 'danger' : 'primary', onclick: () => done(true)}, ok),
		           h('button', {onclick: () => done(false)}, 'Cancel')));
		d.addEventListener('cancel', () => done(false));
		document.body.append(d);
		d.showModal();
	});
}

// A dialog with content; returns {dialog, close}.
export function modal(title, ...content) {
	const d = h('dialog', {class: 'dialog wide', 'aria-label': title});
	const opener = document.activeElement;
	const close = () => {
		d.close();
		d.remove();
		if (opener && opener.isConnected)
			opener.focus();
	};
	d.append(h('div', {class: 'dialog-head'}, h('h2', null, title),
	           h('button', {class: 'link', 'aria-label': 'Close', onclick: close}, '✕')));
	append(d, content);
	d.addEventListener('cancel', close);
	document.body.append(d);
	d.showModal();
	return {dialog: d, close};
}

export function fmtTime(ms) {
	if (!ms)
		return '–';
	const d = new Date(Number(ms));
	const pad = (n) => String(n).padStart(2, '0');
	return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' +
	       pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
}

export function fmtSize(n) {
	if (n === undefined || n === null)
		return '–';
	if (n < 1024)
		return n + ' B';
	if (n < 1048576)
		return (n / 1024).toFixed(1) + ' KiB';
	return (n / 1048576).toFixed(1) + ' MiB';
}

// A table. columns: [{key, label, render(row) -> node|string, class}];
// opts: {select: true (checkboxes; returns the selection), onRow(row),
// empty: 'text', caption, stack: true (at phone width each row becomes a
// block of "label: value" lines)}. Returns {el, selected()}.
export function table(columns, rows, opts = {}) {
	const selected = new Set();
	if (!rows.length)
		return {el: emptyState(opts.empty || 'Nothing here.'), selected: () => []};
	const head = h('tr', null,
	               opts.select ? h('th', {class: 'sel'},
	                               h('input', {type: 'checkbox', 'aria-label': 'Select all',
	                                           onchange: (e) => {
		                                           for (const cb of body.querySelectorAll('input.rowsel')) {
			                                           cb.checked = e.target.checked;
			                                           cb.dispatchEvent(new Event('change'));
		                                           }
	                                           }}))
	                           : null,
	               columns.map((c) => h('th', {scope: 'col', class: c.class || null}, c.label)));
	const body = h('tbody');
	rows.forEach((row, i) => {
		const tr = h('tr', {class: opts.onRow ? 'clickable' : null});
		if (opts.select)
			tr.append(h('td', {class: 'sel'},
			            h('input', {type: 'checkbox', class: 'rowsel', 'aria-label': 'Select row ' + (i + 1),
			                        onchange: (e) => e.target.checked ? selected.add(row) : selected.delete(row),
			                        onclick: (e) => e.stopPropagation()})));
		for (const c of columns) {
			const v = c.render ? c.render(row) : row[c.key];
			tr.append(h('td', {class: c.class || null, 'data-label': c.label},
			            v === undefined || v === null || v === '' ? '–' : v));
		}
		if (opts.onRow) {
			tr.tabIndex = 0;
			tr.addEventListener('click', () => opts.onRow(row));
			tr.addEventListener('keydown', (e) => {
				if (e.key === 'Enter')
					opts.onRow(row);
			});
		}
		body.append(tr);
	});
	const el = h('div', {class: opts.stack ? 'table-wrap stack' : 'table-wrap'},
	             h('table', null, opts.caption ? h('caption', null, opts.caption) : null,
	               h('thead', null, head), body));
	return {el, selected: () => [...selected]};
}

// Label + input; the input gets id and name.
export function field(label, input, hint) {
	if (!input.id)
		input.id = 'f-' + Math.random().toString(36).slice(2);
	return h('div', {class: 'field'}, h('label', {for: input.id}, label), input,
	         hint ? h('small', {class: 'muted'}, hint) : null);
}

// Text to the clipboard; without the Clipboard API (a plain-HTTP portal
// is not a secure context) through a selected, off-screen textarea.
export async function copyText(text) {
	if (navigator.clipboard && window.isSecureContext)
		return navigator.clipboard.writeText(text);
	const t = h('textarea', {class: 'offscreen', readonly: true, 'aria-hidden': 'true', tabindex: '-1'});
	t.value = text;
	document.body.append(t);
	t.select();
	const ok = document.execCommand('copy');
	t.remove();
	if (!ok)
		throw new Error('copy refused');
}

// A copy-to-clipboard button for text.
export function copyButton(text, label = 'Copy') {
	return h('button', {class: 'copy', type: 'button', 'aria-label': label + ': ' + text,
	                    onclick: async () => {
		                    try {
			                    await copyText(text);
			                    toast('Copied');
		                    } catch (e) {
			                    toast('Copy failed: select the text and copy it', 'error');
		                    }
	                    }},
	         label);
}

export function badge(text, kind) {
	return h('span', {class: 'badge ' + (kind || text)}, text);
}

// A bar chart of series over categories (stacked), as SVG.
// data: [{label, values: {series: n}}]; series: [{key, label, color class}].
export function barChart(data, series, {height = 180, title = ''} = {}) {
	const w = Math.max(data.length * 22, 300), top = 10, bottom = 24, left = 36;
	const max = Math.max(1, ...data.map((d) => series.reduce((s, se) => s + (d.values[se.key] || 0), 0)));
	const scale = (height - top - bottom) / max;
	const g = svg('svg', {viewBox: `0 0 ${w + left} ${height}`, class: 'chart', role: 'img', 'aria-label': title});
	g.append(svg('title', null, title));
	for (let i = 0; i <= 2; i++) {
		const v = Math.round(max * i / 2), y = height - bottom - v * scale;
		g.append(svg('line', {x1: left, x2: w + left, y1: y, y2: y, class: 'grid'}),
		         svg('text', {x: left - 4, y: y + 4, class: 'axis', 'text-anchor': 'end'}, String(v)));
	}
	data.forEach((d, i) => {
		let y = height - bottom;
		const x = left + i * (w / data.length) + 2, bw = w / data.length - 4;
		for (const se of series) {
			const v = d.values[se.key] || 0;
			if (!v)
				continue;
			const bh = v * scale;
			y -= bh;
			g.append(svg('rect', {x, y, width: bw, height: bh, class: 'bar ' + se.key},
			             svg('title', null, `${d.label}: ${v} ${se.label}`)));
		}
		if (i % Math.ceil(data.length / 8) === 0)
			g.append(svg('text', {x: x + bw / 2, y: height - 8, class: 'axis', 'text-anchor': 'middle'}, d.label));
	});
	const legend = h('ul', {class: 'legend'},
	                 series.map((se) => h('li', null, h('span', {class: 'swatch ' + se.key}), se.label)));
	// the SVG scrolls on its own where it is too narrow to read (phones); the legend stays
	return h('figure', {class: 'chart-box'}, title ? h('figcaption', null, title) : null,
	         h('div', {class: 'chart-scroll', tabindex: '0', 'aria-label': title || 'Chart'}, g), legend);
}

// Horizontal bars for a top-N list: [{label, count}].
export function topList(items, title, empty) {
	if (!items || !items.length)
		return h('figure', {class: 'chart-box'}, h('figcaption', null, title), emptyState(empty || 'None.'));
	const max = Math.max(...items.map((i) => i.count));
	return h('figure', {class: 'chart-box'}, h('figcaption', null, title),
	         h('ol', {class: 'toplist'},
	           items.map((i) => h('li', null, h('span', {class: 'toplabel', title: i.label}, i.label),
	                              h('span', {class: 'topbar', style: null, dataset: {w: Math.round(100 * i.count / max)}}),
	                              h('span', {class: 'topcount'}, String(i.count))))));
}

// Widths from data-w (CSP: no inline style attributes from strings).
export function applyWidths(root) {
	for (const el of root.querySelectorAll('[data-w]'))
		el.style.width = el.dataset.w + '%';
}

// A modal question with content (checkboxes, text); resolves true when
// confirmed, false on Cancel or Esc. opts: {ok: 'label', danger: bool,
// check: () => an error to show instead of closing, or null}.
export function askDialog(title, content, opts = {}) {
	return new Promise((resolve) => {
		const d = h('dialog', {class: 'dialog wide', 'aria-label': title});
		const status = h('div', {'aria-live': 'assertive'});
		let settled = false;
		const done = (v) => {
			if (settled)
				return;
			const bad = v && opts.check ? opts.check() : null;
			if (bad) {
				clear(status).append(errorBox(bad));
				return;
			}
			settled = true;
			d.close();
			d.remove();
			resolve(v);
		};
		d.append(h('div', {class: 'dialog-head'}, h('h2', null, title),
		           h('button', {class: 'link', type: 'button', 'aria-label': 'Close', onclick: () => done(false)}, '✕')),
		         h('div', {class: 'dialog-body'}, content), status,
		         h('div', {class: 'actions'},
		           h('button', {class: opts.danger ? 'danger' : 'primary', type: 'button', onclick: () => done(true)},
		             opts.ok || 'OK'),
		           h('button', {type: 'button', onclick: () => done(false)}, 'Cancel')));
		d.addEventListener('cancel', (e) => {
			e.preventDefault();
			done(false);
		});
		document.body.append(d);
		d.showModal();
	});
}

// Errors next to the field they name. inputs maps the API's field names
// to inputs ("if[1]" finds "if"); an error naming no listed field goes
// into fallback. The input gets aria-invalid and aria-describedby and the
// focus. clearFieldErrors(scope) removes what an earlier call showed.
export function clearFieldErrors(scope) {
	for (const el of scope.querySelectorAll('.field-error'))
		el.remove();
	for (const el of scope.querySelectorAll('[aria-invalid="true"]')) {
		el.removeAttribute('aria-invalid');
		el.removeAttribute('aria-describedby');
	}
}

export function showFieldError(err, inputs, fallback, message) {
	const f = err && err.field ? String(err.field) : '';
	const input = inputs[f] || inputs[f.replace(/\[\d+\].*$/, '')] || null;
	const text = message || (err && err.message ? err.message : String(err));
	if (!input) {
		fallback.append(errorBox(err));
		return null;
	}
	const id = 'err-' + Math.random().toString(36).slice(2);
	const msg = h('p', {class: 'field-error', id, role: 'alert'}, text);
	const box = input.closest('.field, fieldset') || input.parentNode;
	box.append(msg);
	input.setAttribute('aria-invalid', 'true');
	input.setAttribute('aria-describedby', id);
	input.focus();
	return msg;
}
