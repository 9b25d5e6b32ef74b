// lists.js - the allow and block lists, global and per protected domain:
// an address or @domain (that domain and its subdomains) a line.

import {api} from '../api.js';
import {badge, clear, clearFieldErrors, confirmDialog, errorBox, field, fmtTime, h, loading, page,
        showFieldError, table, toast} from '../ui.js';

const GLOBAL = '';

function scopeLabel(s) {
	return s ? s : 'all domains (global)';
}

export async function render(root) {
	let domains = [];
	try {
		domains = ((await api('GET', 'domains')).items || []).map((d) => d.name).sort();
	} catch (e) {
		/* the lists still work with the global scope */
	}
	const scopeOpts = () => [h('option', {value: GLOBAL}, 'All domains (global)'),
	                         domains.map((d) => h('option', {value: d}, d))];

	// the add form
	const scope = h('select', {id: 'list-scope', name: 'scope'}, scopeOpts());
	const kind = h('select', {id: 'list-kind', name: 'kind'},
	               h('option', {value: 'block'}, 'Block: reject its mail'),
	               h('option', {value: 'allow'}, 'Allow: deliver its mail'));
	const pattern = h('input', {id: 'list-pattern', name: 'pattern', required: true, autocomplete: 'off',
	                            spellcheck: 'false', placeholder: 'someone@example.org or @example.org'});
	const status = h('div', {'aria-live': 'assertive'});
	const add = h('button', {id: 'list-add', class: 'primary', type: 'submit'}, 'Add');
	const form = h('form', {class: 'card', novalidate: true, 'aria-labelledby': 'list-add-h'},
	               h('h2', {id: 'list-add-h'}, 'Add an entry'),
	               h('div', {class: 'row'},
	                 h('div', {class: 'grow'}, field('Sender address or @domain', pattern)),
	                 field('List', kind), field('For', scope), h('div', {class: 'field'}, add)),
	               status);

	// the filter
	const fText = h('input', {id: 'list-filter', type: 'search', name: 'filter', autocomplete: 'off',
	                          spellcheck: 'false', placeholder: 'part of an address'});
	const fKind = h('select', {id: 'list-filter-kind', name: 'filter-kind'},
	                h('option', {value: ''}, 'Allow and block'), h('option', {value: 'allow'}, 'Allow'),
	                h('option', {value: 'block'}, 'Block'));
	const fScope = h('select', {id: 'list-filter-scope', name: 'filter-scope'},
	                 h('option', {value: '*'}, 'Every scope'), scopeOpts());
	const filters = h('form', {class: 'row filters', role: 'search', 'aria-label': 'Filter the entries',
	                           onsubmit: (e) => e.preventDefault()},
	                  h('div', {class: 'grow'}, field('Filter', fText)), field('List', fKind), field('Scope', fScope));
	const list = h('div', {id: 'list-entries', 'aria-live': 'polite'}, loading());

	page(root, 'Allow and block lists',
	     h('p', {class: 'muted'},
	       'Entries match the envelope sender and the From address. Mail from a blocked sender is rejected. ' +
	       'Mail from an allowed sender is delivered whatever its score, but only when the address is ' +
	       'authenticated (SPF or DMARC pass), and never with malware. A domain\'s own lists apply to its ' +
	       'mail on top of the global ones.'),
	     form, h('h2', null, 'Entries'), filters, list);

	let items = [];
	const show = () => {
		const t = fText.value.trim().toLowerCase();
		const rows = items.filter((e) => (!t || e.pattern.toLowerCase().includes(t)) &&
		                                 (!fKind.value || e.kind === fKind.value) &&
		                                 (fScope.value === '*' || e.scope === fScope.value));
		const filtered = rows.length !== items.length;
		clear(list).append(table([
			{label: 'Sender', render: (e) => h('span', {class: 'mono wrap'}, e.pattern)},
			{label: 'List', render: (e) => e.kind === 'allow' ? badge('allow', 'ok') : badge('block', 'reject')},
			{label: 'For', render: (e) => h('span', {class: 'wrap'}, scopeLabel(e.scope))},
			{label: 'Added', render: (e) => fmtTime(e.created_ms)},
			{label: '', class: 'act', render: (e) => h('button', {type: 'button', class: 'danger',
			                                         'aria-label': `Remove ${e.pattern} from the ${e.kind} list of ${scopeLabel(e.scope)}`,
			                                         onclick: () => remove(e)}, 'Remove')},
		], rows, {
			caption: filtered ? `${rows.length} of ${items.length} entries` : `${items.length} ${items.length === 1 ? 'entry' : 'entries'}`,
			empty: items.length ? 'No entry matches the filter.' : 'The lists are empty: add a sender above.',
			stack: true,
		}).el);
	};
	for (const el of [fText, fKind, fScope])
		el.addEventListener(el === fText ? 'input' : 'change', show);

	async function reload() {
		try {
			items = (await api('GET', 'lists')).items || [];
		} catch (e) {
			clear(list).append(errorBox(e));
			return;
		}
		items.sort((a, b) => a.scope.localeCompare(b.scope) || a.kind.localeCompare(b.kind) ||
		                     a.pattern.localeCompare(b.pattern));
		show();
	}

	async function remove(e) {
		if (!await confirmDialog(`Remove ${e.pattern} from the ${e.kind} list of ${scopeLabel(e.scope)}?`, 'Remove', true))
			return;
		try {
			await api('DELETE', 'lists', {scope: e.scope, kind: e.kind, pattern: e.pattern});
			toast(`Removed ${e.pattern}`);
		} catch (err) {
			toast(err.message, 'error');
		}
		await reload();
		fText.focus();
	}

	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		const p = pattern.value.trim();
		const inputs = {pattern, kind, scope};
		if (!p) {
			showFieldError({message: 'Enter an address (someone@example.org) or a domain (@example.org).', field: 'pattern'},
			               inputs, status);
			return;
		}
		add.disabled = true;
		try {
			const r = await api('POST', 'lists', {scope: scope.value, kind: kind.value, pattern: p});
			toast(r && r.added === false ? `${p} was on the ${kind.value} list already`
			                             : `Added ${p} to the ${kind.value} list of ${scopeLabel(scope.value)}`);
			pattern.value = '';
			await reload();
		} catch (err) {
			showFieldError(err, inputs, status);
		} finally {
			add.disabled = false;
		}
		pattern.focus();
	});

	await reload();
}
