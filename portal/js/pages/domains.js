// domains.js - "Domains and routes": the protected domains, where their
// mail goes and how. Domains the config file declares are shown read-only
// (they are changed in the file); the ones added here are kept in moat's
// store and can be edited and removed.

import {api} from '../api.js';
import {badge, clear, clearFieldErrors, confirmDialog, emptyState, errorBox, field, h, loading, modal,
        page, showFieldError, table, toast} from '../ui.js';

const TLS = [
	['', 'opportunistic (default)'],
	['none', 'none'],
	['required', 'required'],
	['verify', 'verify'],
];

// A path segment; one of dots only would be read as a relative path.
const enc = (s) => encodeURIComponent(s).replace(/^\.+$/, (m) => m.replace(/\./g, '%2E'));

// "maildir", "mx" or "smtp:[h]:25, [h2]:25" -> {kind, hosts}
function parseRoute(route) {
	const r = String(route || '');
	if (r.startsWith('smtp:'))
		return {kind: 'smtp', hosts: r.slice(5).trim()};
	return {kind: r === 'mx' ? 'mx' : r === 'maildir' ? 'maildir' : r ? 'smtp' : 'maildir', hosts: ''};
}

function score(v) {
	return v === null || v === undefined ? 'default' : String(v);
}

export async function render(root) {
	const list = h('div', {id: 'domain-list'}, loading());
	const addBtn = h('button', {id: 'domain-add', class: 'primary', type: 'button',
	                            onclick: () => editor(null, reload)}, 'Add a domain');
	page(root, 'Domains and routes',
	     h('p', {class: 'muted'},
	       'moat accepts mail only for these domains and hands it to their route. Domains from the ' +
	       'config file are changed there; the ones added here are kept in moat\'s store.'),
	     h('div', {class: 'actions'}, addBtn), list);

	async function reload() {
		let items;
		try {
			items = (await api('GET', 'domains')).items || [];
		} catch (e) {
			clear(list).append(errorBox(e));
			return;
		}
		items.sort((a, b) => a.name.localeCompare(b.name));
		clear(list).append(domainTable(items, reload));
	}
	await reload();
}

function domainTable(items, reload) {
	const cols = [
		{label: 'Domain', render: (d) => h('strong', {class: 'wrap'}, d.name)},
		{label: 'Recipients', render: recipients},
		{label: 'Route', render: (d) => h('span', {class: 'mono wrap'}, d.route)},
		{label: 'Scores', render: (d) => h('span', null, h('span', {class: 'nowrap'}, 'quarantine ' + score(d.quarantine_score)),
		                                   ', ', h('span', {class: 'nowrap'}, 'reject ' + score(d.reject_score)))},
		{label: 'Relay key', render: (d) => d.relay_key_configured ? badge('set', 'ok') : 'none'},
		{label: 'Kept in', render: (d) => d.source === 'api'
			? h('span', null, badge('store', 'ok'), ' added here')
			: h('span', {class: 'wrap'}, declared(d))},
		{label: '', class: 'act', render: (d) => d.source === 'api'
			? h('div', {class: 'row'},
			    h('button', {type: 'button', 'aria-label': 'Edit ' + d.name, onclick: () => editor(d, reload)}, 'Edit'),
			    h('button', {type: 'button', class: 'danger', 'aria-label': 'Delete ' + d.name,
			                 onclick: () => remove(d, reload)}, 'Delete'))
			: h('span', {class: 'muted'}, 'read-only')},
	];
	return table(cols, items, {
		caption: items.length === 1 ? '1 protected domain' : items.length + ' protected domains',
		empty: 'No protected domains yet: moat accepts no mail until one is added.',
		stack: true,
	}).el;
}

// GET /domains may name the file and line of a declared domain (a 409 from
// PUT or DELETE always does).
function declared(d) {
	return d.file ? `declared in ${d.file}` + (d.line ? ` (line ${d.line})` : '') : 'the config file';
}

function recipients(d) {
	if (d.any_recipient)
		return 'any address';
	const r = d.recipients || [];
	const shown = r.slice(0, 5);
	return h('span', {class: 'wrap'}, shown.join(', '), r.length > 5 ? h('span', {class: 'muted'}, ` and ${r.length - 5} more`) : null);
}

async function remove(d, reload) {
	if (!await confirmDialog(`Delete the domain ${d.name}? moat then refuses its mail.`, 'Delete', true))
		return;
	try {
		await api('DELETE', 'domains/' + enc(d.name));
		toast('Deleted ' + d.name);
	} catch (e) {
		toast(e.message, 'error');
	}
	await reload();
}

// The add/edit form, in a dialog. d: the domain to edit, or null.
function editor(d, reload) {
	const editing = !!d;
	const route = parseRoute(d && d.route);
	const name = h('input', {id: 'dom-name', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false',
	                         value: d ? d.name : '', placeholder: 'example.com'});
	const any = h('input', {type: 'radio', name: 'rcpt-mode', id: 'dom-rcpt-any', value: 'any', checked: !d || d.any_recipient});
	const some = h('input', {type: 'radio', name: 'rcpt-mode', id: 'dom-rcpt-list', value: 'list', checked: d && !d.any_recipient});
	const rlist = h('textarea', {id: 'dom-rcpts', name: 'recipients', rows: 3, spellcheck: 'false',
	                             placeholder: 'alice\nbob@example.com'});
	rlist.value = d && !d.any_recipient ? (d.recipients || []).join('\n') : '';
	const rcptSet = h('fieldset', null, h('legend', null, 'Recipients'),
	                  h('label', {class: 'check'}, any, 'Any address at the domain (the downstream refuses unknown ones)'),
	                  h('label', {class: 'check'}, some, 'Only these addresses or local parts'),
	                  field('Accepted recipients, one a line', rlist));
	const showRcpts = () => {
		rlist.closest('.field').hidden = !some.checked;
	};
	any.addEventListener('change', showRcpts);
	some.addEventListener('change', showRcpts);
	showRcpts();
	const kind = h('select', {id: 'dom-route-kind', name: 'route-kind'},
	               h('option', {value: 'maildir'}, 'maildir (local Maildirs)'),
	               h('option', {value: 'mx'}, 'mx (the domain\'s MX hosts)'),
	               h('option', {value: 'smtp'}, 'smtp (smart hosts)'));
	kind.value = route.kind;
	const hosts = h('input', {id: 'dom-route-hosts', name: 'route', spellcheck: 'false', autocomplete: 'off',
	                          value: route.hosts, placeholder: '[contoso-com.mail.protection.outlook.com]:25'});
	const hostsField = field('Smart hosts, in fallback order', hosts, '[host]:port, [host2]:port; IPv6 as [2001:db8::1]:25');
	const tls = h('select', {id: 'dom-tls', name: 'tls'}, TLS.map(([v, l]) => h('option', {value: v}, l)));
	tls.value = d && d.tls && d.tls !== 'opportunistic' ? d.tls : '';
	const tlsName = h('input', {id: 'dom-tls-name', name: 'tls_name', spellcheck: 'false', autocomplete: 'off',
	                            value: d && d.tls_name ? d.tls_name : '', placeholder: '*.mail.protection.outlook.com'});
	const tlsCa = h('input', {id: 'dom-tls-ca', name: 'tls_ca', spellcheck: 'false', autocomplete: 'off',
	                          value: d && d.tls_ca ? d.tls_ca : '', placeholder: '/etc/ssl/certs/ca-certificates.crt'});
	const tlsUnknown = editing && d.tls === undefined;
	const tlsSet = h('fieldset', null, h('legend', null, 'TLS to the route'),
	                 tlsUnknown ? h('p', {class: 'notice'}, 'moat does not report this domain\'s TLS settings: ' +
	                                'saving sets the ones chosen here.') : null,
	                 field('TLS policy', tls, 'opportunistic: TLS when offered, else plaintext; required: TLS, any ' +
	                       'certificate; verify: TLS with a valid certificate. required and verify never fall back.'),
	                 field('Certificate name (verify)', tlsName, 'Default: the host\'s name. *.example.com accepts hosts under example.com.'),
	                 field('CA file on the moat host (verify)', tlsCa, 'Default: the system\'s store.'));
	const routeSet = h('fieldset', null, h('legend', null, 'Route'), field('Where the mail goes', kind), hostsField);
	const showRoute = () => {
		hostsField.hidden = kind.value !== 'smtp';
		tlsSet.hidden = kind.value === 'maildir';
	};
	kind.addEventListener('change', showRoute);
	showRoute();
	const num = (id, v) => h('input', {id, type: 'number', step: 'any', inputmode: 'decimal',
	                                   value: v === null || v === undefined ? '' : String(v)});
	const qs = num('dom-qscore', d ? d.quarantine_score : null);
	const rs = num('dom-rscore', d ? d.reject_score : null);
	const scoreSet = h('fieldset', null, h('legend', null, 'Scores'),
	                   editing ? h('p', {class: 'muted'}, 'These are the thresholds in force: the domain\'s own or ' +
	                                'moat\'s defaults. Empty: follow moat\'s defaults.') : null,
	                   h('div', {class: 'row'},
	                     field('Quarantine at', qs, 'Empty: scan_quarantine_score'),
	                     field('Reject at', rs, 'Empty: scan_reject_score')));
	const key = h('input', {id: 'dom-relay-key', name: 'relay_key', spellcheck: 'false', autocomplete: 'off',
	                        minlength: 16, maxlength: 128, placeholder: editing && d.relay_key_configured ? 'enter it again to keep it' : ''});
	const keySet = h('fieldset', null, h('legend', null, 'Relay key'),
	                 editing && d.relay_key_configured
	                 	? h('p', {class: 'notice'}, 'A relay key is set. moat never shows it: enter it again to keep it. ' +
	                 	    'Saving with this field empty removes it.')
	                 	: null,
	                 field('Key delivered mail carries (16 to 128 letters, digits, - or _)', key),
	                 h('div', {class: 'row'},
	                   h('button', {type: 'button', onclick: () => {
		                   key.value = randomKey();
		                   key.focus();
	                   }}, 'Generate a key')));
	const status = h('div', {'aria-live': 'assertive'});
	const save = h('button', {id: 'dom-save', class: 'primary', type: 'submit'}, editing ? 'Save' : 'Add domain');
	const form = h('form', {novalidate: true, class: 'form'},
	               editing ? null : field('Domain name', name),
	               rcptSet, routeSet, tlsSet, scoreSet, keySet, status,
	               h('div', {class: 'actions'}, save,
	                 h('button', {type: 'button', onclick: () => m.close()}, 'Cancel')));
	const m = modal(editing ? 'Edit ' + d.name : 'Add a domain', form);
	// the API's field names -> what its error goes next to (the name is not shown when editing)
	const inputs = {name: editing ? null : name, recipients: rlist, route: kind, tls, tls_name: tlsName,
	                tls_ca: tlsCa, quarantine_score: qs, reject_score: rs, relay_key: key};
	form.addEventListener('submit', async (e) => {
		e.preventDefault();
		clear(status);
		clearFieldErrors(form);
		const body = {};
		if (some.checked)
			body.recipients = rlist.value.split(/[\s,]+/).filter(Boolean);
		else
			body.recipients = 'any';
		body.route = kind.value === 'smtp' ? 'smtp:' + hosts.value.trim().replace(/^smtp:\s*/, '') : kind.value;
		if (kind.value !== 'maildir') {
			if (tls.value)
				body.tls = tls.value;
			if (tlsName.value.trim())
				body.tls_name = tlsName.value.trim();
			if (tlsCa.value.trim())
				body.tls_ca = tlsCa.value.trim();
		}
		for (const [k, el] of [['quarantine_score', qs], ['reject_score', rs]])
			if (el.value.trim() !== '')
				body[k] = Number(el.value);
		if (key.value.trim())
			body.relay_key = key.value.trim();
		const n = name.value.trim().replace(/\.$/, '');
		if (!n) {
			showFieldError({message: 'Enter the domain name.', field: 'name'}, inputs, status);
			return;
		}
		if (editing && d.relay_key_configured && !body.relay_key &&
		    !await confirmDialog('No relay key is entered: saving removes the one set now. Save anyway?', 'Save', true))
			return;
		inputs.route = kind.value === 'smtp' ? hosts : kind;
		inputs.recipients = some.checked ? rlist : rcptSet;
		save.disabled = true;
		try {
			await api('PUT', 'domains/' + enc(n), body);
			m.close();
			toast((editing ? 'Saved ' : 'Added ') + n);
			await reload();
		} catch (err) {
			// "[domain NAME]:2: route: ..." - the line is the form's own; the field says which
			showFieldError(err, inputs, status, err.message.replace(/^\[domain [^\]]*\]:\d+: /, ''));
		} finally {
			save.disabled = false;
		}
	});
	(editing ? (some.checked ? rlist : any) : name).focus();
}

function randomKey() {
	const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
	const b = crypto.getRandomValues(new Uint8Array(32));
	return Array.from(b, (x) => abc[x & 63]).join('');
}
