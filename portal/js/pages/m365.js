// m365.js - the Microsoft 365 section. The wizard of the reference page
// (introduction → protections → authentication and execution → summary →
// check configuration → done) drives one job of /api/v1/m365/jobs and
// follows it about every second; the section also shows what moat last saw
// of the tenant, the recent jobs, the bypass-clutter rule and connectors
// (apply, check, undo: each through the same sign-in) and the PowerShell
// script for admins who run it themselves.
//
// Routes: #/m365 (the section), #/m365/wizard (the wizard's first step),
// #/m365/job/ID (a job followed through the wizard's later steps; a reload
// comes back to it). Every string from the API goes in as text (ui.js h()).

import {api, apiText} from '../api.js';
import {badge, clear, confirmDialog, copyButton, emptyState, errorBox, fill, fmtTime, h, loading, modal, page,
        table, toast} from '../ui.js';

const POLL_MS = 1000;
// States after which a job changes no more ("waiting" is not one: apply
// waits there for Exchange and comes back to checking).
const FINAL = new Set(['done', 'pending', 'failed', 'cancelled', 'planned']);

const PROTECTIONS = [
	{key: 'antispam', label: 'Anti-spam',
	 hint: 'Custom anti-spam rules off; the default policy relaxed (spam to Junk, bulk mail not marked, ' +
	       'no zero-hour auto purge). Microsoft\'s default policy itself cannot be switched off.'},
	{key: 'antiphish', label: 'Anti-phishing',
	 hint: 'Custom rules off; on the default policy spoof intelligence, DMARC enforcement, ' +
	       'unauthenticated-sender marks and first-contact tips off.'},
	{key: 'antimalware', label: 'Anti-malware',
	 hint: 'Microsoft always quarantines malware, even mail moat released: only custom rules, ' +
	       'the common-attachments filter and zero-hour auto purge are turned off.'},
	{key: 'safelinks', label: 'Safe Links',
	 hint: 'Defender for Office 365. Custom rules off, so links are not wrapped twice; the built-in ' +
	       'protection cannot be turned off, it gets moat\'s domains as exceptions.'},
	{key: 'safeattachments', label: 'Safe Attachments',
	 hint: 'Defender for Office 365. Custom rules and policies off; the built-in protection gets ' +
	       'moat\'s domains as exceptions.'},
];

const MODES = [
	{key: 'none', label: 'No connectors',
	 hint: 'Only the protections and the bypass-clutter rule. Mail already reaches Exchange from moat.'},
	{key: 'mx', label: 'MX mode',
	 hint: 'Your domains\' MX records point at moat; an inbound connector in Exchange accepts mail ' +
	       'from moat\'s addresses over TLS.'},
	{key: 'relay', label: 'Relay mode',
	 hint: 'Your MX stays with Microsoft; a rule routes inbound mail out to moat and back through two ' +
	       'connectors. Microsoft discourages this (mail is counted twice and returning mail can look ' +
	       'spoofed): add spoof-allow entries for moat\'s addresses if you use it.'},
];

const STATE_TEXT = {
	starting: 'Asking Microsoft for a single-use code…',
	signin: 'Waiting for you to sign in at Microsoft…',
	reading: 'Signed in. Reading the tenant\'s settings…',
	planned: 'The plan is ready; nothing was changed.',
	applying: 'Making the changes in Exchange Online…',
	checking: 'Reading the settings back from Exchange Online…',
	undoing: 'Putting back what moat changed…',
	waiting: 'Exchange Online has not shown every change yet (this can take up to 30 minutes). moat ' +
	         'checks again by itself; press "Check again" to check now.',
	done: 'Finished.',
	pending: 'The sign-in ended before Exchange Online showed every change.',
	failed: 'The job failed.',
	cancelled: 'The job was cancelled.',
};

const KIND_TITLE = {
	apply: 'Set up Exchange Online',
	undo: 'Undo moat\'s changes in Exchange Online',
	check: 'Check the Exchange Online configuration',
	connect: 'Read the tenant',
	plan: 'Plan for Exchange Online',
};

const STEP_LABEL = {
	intro: 'Introduction',
	choose: 'Protections',
	signin: 'Authentication and execution',
	summary: 'Summary',
	check: 'Check configuration',
	done: 'Done',
};

// moat's objects in the tenant: their names, and their items in a check.
const MOAT_OBJECTS = [
	{name: 'moat: bypass clutter for gateway mail', item: 'bypass-rule', label: 'Bypass-clutter rule (SCL -1)'},
	{name: 'moat: from the gateway', item: 'inbound-connector', label: 'Inbound connector from moat'},
	{name: 'moat: to the gateway', item: 'outbound-connector', label: 'Outbound connector to moat (relay mode)'},
	{name: 'moat: route inbound mail to the gateway', item: 'relay-rule', label: 'Relay rule (relay mode)'},
];

export async function render(root, params) {
	if (params[0] === 'wizard')
		return wizard(root, {});
	if (params[0] === 'job' && /^[0-9a-f]{16}$/.test(params[1] || ''))
		return wizard(root, {jobId: params[1]});
	return overview(root);
}

// --- small helpers ---------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function stateBadge(state) {
	const running = !FINAL.has(state) && state !== 'waiting';
	return badge(state, running ? 'running' : state);
}

function sentence(s) {
	s = String(s || '');
	return s ? s[0].toUpperCase() + s.slice(1) + (/[.!?]$/.test(s) ? '' : '.') : '';
}

function protLabel(key) {
	const p = PROTECTIONS.find((x) => x.key === key);
	return p ? p.label : key;
}

function listWords(words) {
	if (words.length <= 1)
		return words.join('');
	return words.slice(0, -1).join(', ') + ' and ' + words[words.length - 1];
}

// Only web addresses open in the pop-up (never javascript: or data:).
function webUrl(s) {
	try {
		const u = new URL(s);
		return u.protocol === 'https:' || u.protocol === 'http:' ? u.href : null;
	} catch (e) {
		return null;
	}
}

function goOverview(root) {
	if (location.hash.replace(/^#\/?/, '') !== 'm365')
		location.hash = '#/m365';
	else
		overview(root);
}

// The choice as a job body, and as the script's query (protections always
// given: an empty list means none, a missing one all).
function choiceQuery(c) {
	const u = new URLSearchParams();
	u.set('protections', c.protections.join(','));
	u.set('bypass_rule', String(c.bypass_rule));
	u.set('mode', c.mode);
	u.set('enhanced_filtering', String(c.enhanced_filtering));
	return '?' + u.toString();
}

function downloadText(text, name) {
	const url = URL.createObjectURL(new Blob([text], {type: 'text/plain'}));
	const a = h('a', {href: url, download: name, hidden: true});
	document.body.append(a);
	a.click();
	a.remove();
	setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function showScript(title, path) {
	let text;
	try {
		text = await apiText(path);
	} catch (e) {
		toast(e.message, 'error');
		return;
	}
	modal(title,
	      h('p', {class: 'muted'}, 'Run it in PowerShell after Connect-ExchangeOnline, signed in as an Exchange or ' +
	        'Global Administrator. Read it first: it changes mail flow and protection settings.'),
	      h('div', {class: 'actions'}, copyButton(text, 'Copy script'),
	        h('button', {type: 'button', onclick: () => downloadText(text, 'moat-m365.ps1')}, 'Download moat-m365.ps1')),
	      h('pre', {class: 'script', tabindex: '0', 'aria-label': 'PowerShell script'}, text));
}

// --- the choice (protections, bypass rule, mode, Enhanced Filtering) --------

// opts: {prefix, offer: [keys] | null (no protections part), choice}.
// Returns {el, value()}.
function choiceForm(opts) {
	const c = opts.choice;
	const px = opts.prefix;
	const parts = [];
	let prots = [];
	if (opts.offer) {
		prots = PROTECTIONS.filter((p) => opts.offer.includes(p.key)).map((p) => {
			const cb = h('input', {type: 'checkbox', id: `${px}-p-${p.key}`, name: 'protection', value: p.key,
			                       checked: c.protections.includes(p.key),
			                       'aria-describedby': `${px}-p-${p.key}-hint`});
			return {key: p.key, cb,
			        el: h('div', {class: 'option'},
			              h('label', {class: 'check', for: cb.id}, cb, h('span', null, p.label)),
			              h('small', {id: `${px}-p-${p.key}-hint`, class: 'muted'}, p.hint))};
		});
		parts.push(h('fieldset', {class: 'choice'},
		             h('legend', null, 'Microsoft protections to switch off for mail from moat'),
		             prots.map((p) => p.el)));
	}
	const bypass = h('input', {type: 'checkbox', id: `${px}-bypass`, name: 'bypass_rule', checked: c.bypass_rule,
	                           'aria-describedby': `${px}-bypass-hint`});
	const ef = h('input', {type: 'checkbox', id: `${px}-ef`, name: 'enhanced_filtering',
	                       checked: c.enhanced_filtering, 'aria-describedby': `${px}-ef-hint`});
	const radios = MODES.map((m) => {
		const r = h('input', {type: 'radio', id: `${px}-mode-${m.key}`, name: `${px}-mode`, value: m.key,
		                      checked: c.mode === m.key, 'aria-describedby': `${px}-mode-${m.key}-hint`});
		return {key: m.key, r,
		        el: h('div', {class: 'option'},
		              h('label', {class: 'check', for: r.id}, r, h('span', null, m.label)),
		              h('small', {id: `${px}-mode-${m.key}-hint`, class: 'muted'}, m.hint))};
	});
	let bypassWanted = c.bypass_rule;
	const mode = () => (radios.find((x) => x.r.checked) || radios[0]).key;
	const sync = () => {
		const mx = mode() === 'mx';
		if (!mx)
			ef.checked = false;
		ef.disabled = !mx;
		if (ef.checked) {
			bypass.checked = false;
			bypass.disabled = true;
		} else {
			if (bypass.disabled)
				bypass.checked = bypassWanted;
			bypass.disabled = false;
		}
	};
	bypass.addEventListener('change', () => {
		bypassWanted = bypass.checked;
	});
	ef.addEventListener('change', sync);
	for (const x of radios)
		x.r.addEventListener('change', sync);
	parts.push(h('fieldset', {class: 'choice'},
	             h('legend', null, 'Mail flow'),
	             h('div', {class: 'option'},
	               h('label', {class: 'check', for: bypass.id}, bypass, h('span', null, 'Bypass-clutter rule')),
	               h('small', {id: bypass.id + '-hint', class: 'muted'},
	                 'A mail-flow rule gives mail from moat SCL -1 and X-MS-Exchange-Organization-BypassClutter: ' +
	                 'true, so Microsoft does not filter it again or sort it out of the inbox. It only matches ' +
	                 'mail from moat\'s addresses that carries moat\'s key header. SCL -1 does not skip ' +
	                 'Microsoft\'s malware and high-confidence phishing verdicts.')),
	             h('p', {class: 'sub', id: `${px}-modes`}, 'Connectors'),
	             h('div', {class: 'modes', role: 'radiogroup', 'aria-labelledby': `${px}-modes`},
	               radios.map((x) => x.el)),
	             h('div', {class: 'option'},
	               h('label', {class: 'check', for: ef.id}, ef, h('span', null, 'Enhanced Filtering (MX mode only)')),
	               h('small', {id: ef.id + '-hint', class: 'muted'},
	                 'Lets Microsoft see the original sender behind moat, so SPF and DMARC still work. Microsoft ' +
	                 'says not to combine it with an SCL -1 rule, so it replaces the bypass-clutter rule.'))));
	sync();
	return {
		el: h('div', {class: 'choice-form'}, parts),
		value: () => ({protections: prots.filter((p) => p.cb.checked).map((p) => p.key),
		               bypass_rule: bypass.checked, mode: mode(), enhanced_filtering: ef.checked}),
	};
}

// --- pieces shared by the wizard and the section ----------------------------

function checkTable(items) {
	return table([
		{key: 'title', label: 'Item', render: (c) => c.title || c.item},
		{key: 'status', label: 'Status', render: (c) => badge(c.status)},
		{key: 'detail', label: 'Detail', class: 'detail'},
	], items || [], {empty: 'Nothing to check.', caption: 'What Exchange Online shows', stack: true}).el;
}

// The plan's steps with what became of each: [{why, cmdlet, status, error}].
function stepList(j) {
	const plan = (j.plan && j.plan.steps) || [];
	const ran = j.steps || [];
	const rows = plan.length ? plan : ran;
	return h('ol', {class: 'plan'}, rows.map((s, i) => {
		const r = ran[i] && ran[i].cmdlet === s.cmdlet ? ran[i] : null;
		const st = r ? r.status : (j.state === 'failed' || j.state === 'cancelled' ? 'not run' : 'to do');
		return h('li', {class: 'plan-step'},
		         h('div', {class: 'why'}, sentence(s.why || s.cmdlet)),
		         h('div', {class: 'meta'}, h('code', {class: 'mono'}, s.cmdlet), ' ',
		           badge(st, st === 'to do' || st === 'not run' ? 'todo' : st)),
		         r && r.error ? h('div', {class: 'step-error'}, r.error.explain || r.error.text || '') : null);
	}));
}

function progressOf(j) {
	const total = ((j.plan && j.plan.steps) || []).length;
	const ran = (j.steps || []).filter((s) => s.status === 'done' || s.status === 'skipped').length;
	return {total, ran};
}

function errorDetails(e) {
	if (!e)
		return null;
	return h('dl', {class: 'kv'},
	         h('dt', null, 'What happened'), h('dd', null, sentence(e.explain)),
	         h('dt', null, 'What to do'), h('dd', null, sentence(e.action)),
	         e.text && !(e.explain || '').includes(e.text)
	                 ? [h('dt', null, 'Microsoft said'), h('dd', null, h('q', {class: 'ms-text'}, e.text))] : null);
}

function successText(j) {
	const c = j.choice || {};
	if (j.kind === 'apply') {
		const parts = [];
		const defender = !j.detect || j.detect.defender !== false;
		const prots = (c.protections || []).filter((k) => defender || !/^safe/.test(k)).map((k) => /^Safe/.test(protLabel(k)) ? protLabel(k)
		                                                                         : protLabel(k).toLowerCase());
		if (prots.length)
			parts.push(listWords(prots) + ' no longer quarantine or re-filter mail that moat has passed, as far as ' +
			           'Microsoft allows');
		if (c.bypass_rule && !c.enhanced_filtering)
			parts.push('the bypass-clutter rule sends mail from moat straight to the inbox');
		if (c.mode === 'mx')
			parts.push('the inbound connector accepts mail from moat' +
			           (c.enhanced_filtering ? ' with Enhanced Filtering' : ''));
		if (c.mode === 'relay')
			parts.push('inbound mail is routed through moat and back by the relay rule and connectors');
		return 'Exchange Online is set up: ' + (parts.length ? parts.join('; ') : 'nothing needed changing') +
		       '. Exchange shows every change.';
	}
	if (j.kind === 'undo')
		return 'Exchange Online is back as it was before moat: ' + (j.summary || 'nothing was left to undo') + '.';
	if (j.kind === 'check')
		return 'Exchange Online is set up as moat applied it: every item checked is in place.';
	if (j.kind === 'connect')
		return 'moat read the tenant' + (j.account ? ' as ' + j.account : '') + '. Nothing was changed.';
	return 'The plan is ready. Nothing was changed.';
}

// --- the wizard --------------------------------------------------------------

function stepsOf(kind) {
	if (kind === 'apply')
		return ['intro', 'choose', 'signin', 'summary', 'check', 'done'];
	if (kind === 'undo' || kind === 'plan')
		return ['signin', 'summary', 'done'];
	return ['signin', 'done'];
}

async function wizard(root, {jobId}) {
	page(root, 'Microsoft 365', loading());
	let tenant = null, job = null;
	try {
		[tenant, job] = await Promise.all([
			api('GET', 'm365/tenant'),
			jobId ? api('GET', 'm365/jobs/' + jobId) : null,
		]);
	} catch (e) {
		page(root, 'Microsoft 365', errorBox(e), h('a', {href: '#/m365'}, 'Back to Microsoft 365'));
		return;
	}
	const w = {
		root, tenant, job,
		kind: job ? job.kind : 'apply',
		step: job ? null : 'intro',
		choice: job && job.choice ? {protections: job.choice.protections || [],
		                             bypass_rule: !!job.choice.bypass_rule, mode: job.choice.mode || 'none',
		                             enhanced_filtering: !!job.choice.enhanced_filtering}
		                          : {protections: tenant.offer.slice(), bypass_rule: true, mode: 'none',
		                             enhanced_filtering: false},
		checkAsked: !!job && FINAL.has(job.state),
		view: null, viewKey: null, following: false, netError: null, reached: new Set(),
	};
	w.title = h('h1', null, KIND_TITLE[w.kind]);
	w.indicator = h('ol', {class: 'steps wizard-steps', 'aria-label': 'Steps'});
	w.body = h('div', {class: 'wizard-body'});
	w.frame = h('section', {class: 'wizard', 'aria-labelledby': 'm365-wizard-title'}, w.indicator, w.body);
	w.title.id = 'm365-wizard-title';
	clear(root);
	document.title = KIND_TITLE[w.kind] + ' · moat';
	root.append(h('p', {class: 'crumb'}, h('a', {href: '#/m365'}, 'Microsoft 365')), w.title, w.frame);
	sync(w);
	if (job && !FINAL.has(job.state))
		follow(w);
}

function alive(w) {
	return w.frame.isConnected;
}

function stepFor(w) {
	const j = w.job;
	if (!j)
		return w.step;
	const final = FINAL.has(j.state);
	if (j.state === 'failed' || j.state === 'cancelled')
		return 'done';
	if (j.kind === 'apply') {
		if (!j.plan)
			return 'signin';
		if (!w.checkAsked)
			return 'summary';
		return final ? 'done' : 'check';
	}
	if (j.kind === 'undo' || j.kind === 'plan')
		return final ? 'done' : j.plan ? 'summary' : 'signin';
	return final ? 'done' : 'signin';
}

function sync(w) {
	if (!alive(w))
		return;
	const key = stepFor(w);
	if (key !== w.viewKey) {
		const steps = stepsOf(w.kind);
		fill(w.indicator, ...steps.map((s, i) =>
			h('li', {'aria-current': s === key ? 'step' : null,
			         class: steps.indexOf(key) > i && (w.reached.has(s) || s === 'intro' || s === 'choose') ? 'past'
			                                                                                                : null},
			  h('span', {class: 'num'}, String(i + 1)), ' ', w.kind !== 'apply' && s === 'signin' ? 'Sign-in'
			                                                                                        : STEP_LABEL[s])));
		w.viewKey = key;
		w.reached.add(key);
		w.view = VIEWS[key](w);
		fill(w.body, w.view.el);
		const head = w.view.el.querySelector('h2');
		if (head) {
			head.tabIndex = -1;
			head.focus({preventScroll: false});
		}
	}
	if (w.view.update && w.job)
		w.view.update(w.job);
}

// Follow the job about every second until it is final.
async function follow(w) {
	if (w.following)
		return;
	w.following = true;
	try {
		while (alive(w)) {
			await sleep(POLL_MS);
			if (!alive(w))
				return;
			try {
				w.job = await api('GET', 'm365/jobs/' + w.job.id);
				w.netError = null;
			} catch (e) {
				if (e.status === 401)
					return;
				w.netError = e;
			}
			sync(w);
			if (FINAL.has(w.job.state))
				return;
		}
	} finally {
		w.following = false;
	}
}

async function startJob(w, body, errorSlot) {
	let j;
	try {
		j = await api('POST', 'm365/jobs', body);
	} catch (e) {
		if (errorSlot)
			fill(errorSlot, errorBox(e));
		else
			toast(e.message, 'error');
		return;
	}
	w.job = j;
	w.kind = j.kind;
	w.checkAsked = false;
	history.replaceState(null, '', '#/m365/job/' + j.id);
	sync(w);
	follow(w);
}

async function cancelJob(w) {
	const j = w.job;
	const changing = j.state === 'applying' || j.state === 'undoing';
	if (changing && !await confirmDialog('Stop now? The changes made so far stay in Exchange Online; ' +
	                                     'run the wizard again or undo them later.', 'Stop the job', true))
		return;
	try {
		w.job = await api('POST', 'm365/jobs/' + j.id + '/cancel', {});
		sync(w);
		follow(w);
	} catch (e) {
		toast(e.message, 'error');
	}
}

function cancelButton(w) {
	return h('button', {type: 'button', class: 'cancel-job', onclick: () => cancelJob(w)}, 'Cancel');
}

function statusLine() {
	return h('p', {class: 'status', role: 'status', 'aria-live': 'polite'});
}

function setStatus(el, w, text) {
	fill(el, text, w.netError ? h('span', {class: 'muted'}, ' (moat cannot be reached right now; ' +
	                                       'trying again: ' + w.netError.message + ')') : null);
}

const VIEWS = {
	intro(w) {
		const egress = (w.tenant.config && w.tenant.config.egress) || '';
		const next = h('button', {class: 'primary', type: 'button', id: 'm365-next',
		                          onclick: () => {
			                          w.step = 'choose';
			                          sync(w);
		                          }}, 'Next');
		return {el: h('div', {class: 'wizard-step'},
		              h('h2', null, 'Introduction'),
		              h('p', null, 'This wizard switches off the Microsoft Defender protections that moat replaces, ' +
		                'for mail that comes through moat, and adds the "bypass clutter" mail-flow rule. It does ' +
		                'this for two reasons:'),
		              h('ul', null,
		                h('li', null, 'Mail you released from moat\'s quarantine must not be quarantined a second ' +
		                  'time by Microsoft, or land in Junk.'),
		                h('li', null, 'One central quarantine: moat\'s, instead of also watching Microsoft\'s.')),
		              h('h3', null, 'What you need'),
		              h('ul', null,
		                h('li', null, 'An Exchange Administrator or Global Administrator account of your ' +
		                  'Microsoft 365 tenant.'),
		                h('li', null, 'A single-use code that the wizard shows you. You enter it at Microsoft ' +
		                  'and sign in there: moat never sees a password and keeps no credential.'),
		                h('li', null, egress ? ['The addresses moat sends to Exchange from: ',
		                                        h('span', {class: 'mono'}, egress), '.']
		                                     : 'The addresses moat sends to Exchange from (m365_egress).')),
		              egress ? null
		                     : h('p', {class: 'warning'}, 'm365_egress is not set in moat\'s configuration: the ' +
		                         'bypass-clutter rule and the connectors need it. Set it and restart moatd, or ' +
		                         'choose only protections.'),
		              h('h3', null, 'Good to know'),
		              h('ul', null,
		                h('li', null, 'Microsoft does not let anyone switch everything off: malware is always ' +
		                  'quarantined, and the default policies and the built-in Safe Links and Safe ' +
		                  'Attachments protection can only be relaxed or given exceptions. The wizard says ' +
		                  'exactly what it does.'),
		                h('li', null, 'Changes can take up to 30 minutes to show in Exchange Online. "Check ' +
		                  'configuration" says "pending" until they do.'),
		                h('li', null, 'If a Conditional Access policy blocks sign-in with a code, ask for an ' +
		                  'exception for this one sign-in.'),
		                h('li', null, 'Prefer to run it yourself? The PowerShell script on the Microsoft 365 page ' +
		                  'makes the same changes.')),
		              h('div', {class: 'actions'}, next,
		                h('button', {type: 'button', onclick: () => goOverview(w.root)}, 'Cancel')))};
	},

	choose(w) {
		const form = choiceForm({prefix: 'wz', offer: w.tenant.offer, choice: w.choice});
		const err = h('div', {'aria-live': 'assertive'});
		const seen = w.tenant.seen;
		const defenderNote = !w.tenant.offer.includes('safelinks')
			? h('p', {class: 'notice'}, 'Safe Links and Safe Attachments are not shown: the tenant moat last ' +
			    'saw has no Microsoft Defender for Office 365.')
			: !seen ? h('p', {class: 'muted'}, 'moat has not seen your tenant yet. Safe Links and Safe Attachments ' +
			            'are shown in case it has Defender for Office 365; if it has not, moat leaves them out.')
			        : null;
		const next = h('button', {class: 'primary', type: 'submit', id: 'm365-start'}, 'Next');
		const f = h('form', {class: 'wizard-step', novalidate: true},
		            h('h2', null, 'Choose protections'),
		            h('p', null, 'Choose what moat switches off in Exchange Online for mail that moat has already ' +
		              'scanned. We recommend all of them.'),
		            defenderNote, form.el, err,
		            h('div', {class: 'actions'}, next,
		              h('button', {type: 'button', onclick: () => {
			              w.choice = form.value();
			              w.step = 'intro';
			              sync(w);
		              }}, 'Back'),
		              h('button', {type: 'button', class: 'link',
		                           onclick: () => showScript('PowerShell script for this choice',
		                                                     'm365/script' + choiceQuery(form.value()))},
		                'View as PowerShell script')));
		f.addEventListener('submit', async (e) => {
			e.preventDefault();
			w.choice = form.value();
			clear(err);
			next.disabled = true;
			await startJob(w, Object.assign({kind: 'apply'}, w.choice), err);
			next.disabled = false;
		});
		return {el: f};
	},

	signin(w) {
		const status = statusLine();
		const codeBox = h('div', {class: 'signin-box'});
		let shown = null;
		const cancel = cancelButton(w);
		const el = h('div', {class: 'wizard-step'},
		             h('h2', null, w.kind === 'apply' ? 'Authentication and execution' : 'Sign in to Microsoft 365'),
		             codeBox, status, h('div', {class: 'actions'}, cancel));
		const update = (j) => {
			const s = j.signin;
			const key = s ? s.user_code + '|' + s.verification_uri : null;
			if (key !== shown) {
				shown = key;
				clear(codeBox);
				if (s)
					codeBox.append(signinBox(s));
				else if (j.account)
					codeBox.append(h('p', {class: 'success'}, 'Signed in as ', j.account, '.'));
			}
			const left = s ? Math.round((s.expires_at - Date.now()) / 60000) : null;
			const exp = codeBox.querySelector('.expiry');
			if (s && exp)
				fill(exp, 'The code works until ', fmtTime(s.expires_at),
				                  left > 1 ? ' (about ' + left + ' minutes from now).'
				                           : left >= 0 ? ' (less than two minutes from now).'
				                                       : ' (it has expired: cancel and start again).');
			setStatus(status, w, STATE_TEXT[j.state] || j.state);
			cancel.hidden = FINAL.has(j.state);
		};
		return {el, update};
	},

	summary(w) {
		const status = statusLine();
		const who = h('p');
		const prog = h('progress', {max: '1', value: '0', 'aria-labelledby': 'm365-progress-text'});
		const progText = h('span', {id: 'm365-progress-text'});
		const list = h('div', {class: 'plan-box'});
		const notes = h('div');
		const check = h('button', {class: 'primary', type: 'button', id: 'm365-check',
		                           onclick: () => {
			                           w.checkAsked = true;
			                           sync(w);
		                           }}, 'Check configuration');
		const script = h('button', {type: 'button', class: 'link',
		                            onclick: () => showScript('PowerShell script of this job',
		                                                      'm365/jobs/' + w.job.id + '/script')},
		                 'View as PowerShell script');
		const cancel = cancelButton(w);
		const undo = w.kind === 'undo';
		const el = h('div', {class: 'wizard-step'},
		             h('h2', null, 'Summary'), who, status,
		             h('div', {class: 'progress-row'}, prog, progText),
		             h('h3', null, undo ? 'What moat puts back' : 'What changes in Exchange Online'),
		             list, notes,
		             h('div', {class: 'actions'}, w.kind === 'apply' ? check : null,
		               w.kind === 'apply' || w.kind === 'plan' ? script : null, cancel));
		let last = '';
		const update = (j) => {
			fill(who, j.account ? ['Signed in as ', h('strong', null, j.account),
			                               j.tenant_id ? [' (tenant ', h('span', {class: 'mono'}, j.tenant_id), ')']
			                                           : null, '.']
			                            : null);
			const made = w.kind === 'apply' && ['checking', 'waiting', 'done', 'pending'].includes(j.state);
			setStatus(status, w, made ? 'The changes are made. Press "Check configuration" to see whether Exchange ' +
			                            'Online shows them.'
			                          : STATE_TEXT[j.state] || j.state);
			const {total, ran} = progressOf(j);
			prog.max = Math.max(total, 1);
			prog.value = total ? ran : (FINAL.has(j.state) || j.state === 'waiting' || j.state === 'checking' ? 1 : 0);
			progText.textContent = total ? `${ran} of ${total} changes made` : 'No change needed';
			const sig = JSON.stringify([(j.steps || []).map((s) => s.status), j.state]);
			if (sig !== last) {
				last = sig;
				const steps = (j.plan && j.plan.steps) || [];
				fill(list, steps.length ? stepList(j)
				                                : emptyState(undo ? 'Nothing to undo: moat changed nothing that is ' +
				                                                    'still there.'
				                                                  : 'Nothing to change: Exchange Online is already ' +
				                                                    'set up as chosen.'));
				const n = (j.plan && j.plan.notes) || [];
				fill(notes, n.length ? [h('h3', null, 'Good to know'),
				                                h('ul', {class: 'notes'}, n.map((x) => h('li', null, x)))]
				                             : null);
			}
			check.disabled = j.state === 'applying' || j.state === 'reading';
			cancel.hidden = FINAL.has(j.state);
		};
		return {el, update};
	},

	check(w) {
		const status = statusLine();
		const items = h('div');
		const again = h('button', {class: 'primary', type: 'button', id: 'm365-check-again',
		                           onclick: () => askCheck(w)}, 'Check again');
		const cancel = cancelButton(w);
		const el = h('div', {class: 'wizard-step'},
		             h('h2', null, 'Check configuration'), status, items,
		             h('div', {class: 'actions'}, again, cancel));
		let last = '';
		const update = (j) => {
			setStatus(status, w, STATE_TEXT[j.state] || j.state);
			const sig = JSON.stringify(j.check || null);
			if (sig !== last) {
				last = sig;
				fill(items, j.check ? checkTable(j.check) : loading());
			}
			// asked and not read back yet: one check at a time
			again.disabled = j.state !== 'waiting' || (w.askedAt !== undefined && j.checked === w.askedAt);
			cancel.hidden = FINAL.has(j.state);
		};
		if (w.job.state === 'waiting')
			askCheck(w);
		return {el, update};
	},

	done(w) {
		const j = w.job;
		const checks = j.check || [];
		const bad = checks.filter((c) => c.status !== 'ok' && c.status !== 'skipped');
		const parts = [];
		let head = 'Done';
		if (j.state === 'failed') {
			head = j.kind === 'apply' ? 'The wizard could not finish' : 'The job could not finish';
			parts.push(h('div', {class: 'error result', role: 'alert'}, errorDetails(j.error)));
		} else if (j.state === 'cancelled') {
			head = 'Cancelled';
			parts.push(h('p', {class: 'notice result'},
			             j.note ? j.note.charAt(0).toUpperCase() + j.note.slice(1) + '.' : 'The job was cancelled.',
			             (j.steps || []).some((s) => s.status === 'done')
			                     ? ' The changes made before stay in Exchange Online: run the wizard again or ' +
			                       'undo them.'
			                     : ' Nothing was changed.'));
		} else if (j.state === 'pending') {
			head = 'Not every change shows yet';
			parts.push(h('p', {class: 'warning result'}, 'Exchange Online has not shown every change yet: it can ' +
			             'take up to 30 minutes. ', j.note || 'Run a check again later.'));
		} else if (bad.length) {
			parts.push(h('p', {class: 'warning result'}, 'Done, but Exchange Online shows differences from what ' +
			             'moat wants: ', listWords(bad.map((c) => c.title || c.item)), '. Run the wizard again to ' +
			             'put them back.'));
		} else {
			parts.push(h('p', {class: 'success result', role: 'status'}, successText(j)));
		}
		if (j.kind === 'connect' && j.detect)
			parts.push(h('h3', null, 'What moat saw'), detectList(j.detect, j));
		if (checks.length)
			parts.push(checkTable(checks));
		if ((j.plan && j.plan.steps.length) || (j.steps && j.steps.length))
			parts.push(h('details', {class: 'changes', open: j.state === 'failed' && j.kind !== 'connect'},
			             h('summary', null, j.kind === 'undo' ? 'What moat put back' : 'What moat changed'),
			             stepList(j),
			             j.plan && j.plan.notes && j.plan.notes.length
			                     ? h('ul', {class: 'notes'}, j.plan.notes.map((x) => h('li', null, x))) : null));
		const ok = h('button', {class: 'primary', type: 'button', id: 'm365-ok', onclick: () => goOverview(w.root)},
		             'OK');
		const again = j.kind === 'apply' && (j.state === 'failed' || j.state === 'cancelled')
			? h('button', {type: 'button', onclick: () => {
				w.job = null;
				w.kind = 'apply';
				w.step = 'choose';
				w.checkAsked = false;
				w.reached = new Set();
				history.replaceState(null, '', '#/m365/wizard');
				sync(w);
			}}, 'Try again')
			: null;
		const recheck = j.state === 'pending' || (j.state === 'done' && bad.length && j.kind !== 'apply')
			? h('button', {type: 'button', onclick: () => startJob(w, {kind: 'check'})}, 'Run a check')
			: null;
		return {el: h('div', {class: 'wizard-step'}, h('h2', null, head), parts,
		              h('div', {class: 'actions'}, ok, again, recheck))};
	},
};

async function askCheck(w) {
	w.askedAt = w.job.checked;
	try {
		w.job = await api('POST', 'm365/jobs/' + w.job.id + '/check', {});
	} catch (e) {
		if (e.status !== 409) // already past waiting: the next poll shows it
			toast(e.message, 'error');
	}
	sync(w);
	follow(w);
}

function signinBox(s) {
	const uri = webUrl(s.verification_uri);
	const open = () => {
		// noopener: the pop-up gets no handle on this page (window.open returns null then).
		window.open(uri, 'moat-m365-signin', 'popup=yes,width=560,height=720,noopener,noreferrer');
	};
	return h('div', {class: 'signin'},
	         h('ol', {class: 'signin-steps'},
	           h('li', null, 'Copy this single-use code:',
	             h('div', {class: 'code-row'},
	               h('span', {class: 'code', id: 'm365-code', 'aria-label': 'Single-use code'}, s.user_code),
	               copyButton(s.user_code, 'Copy code'))),
	           h('li', null, 'Press "Configure". Microsoft\'s sign-in page opens in a pop-up: paste the code, press ' +
	             'Next, pick an Exchange or Global Administrator account and press Continue.'),
	           h('li', null, 'Close the pop-up when Microsoft says so, and keep this page open: the wizard goes on ' +
	             'by itself.')),
	         h('div', {class: 'actions'},
	           h('button', {class: 'primary', type: 'button', id: 'm365-configure', disabled: !uri, onclick: open},
	             'Configure')),
	         h('p', {class: 'muted'}, 'No pop-up? Open ',
	           uri ? h('a', {href: uri, target: '_blank', rel: 'noopener noreferrer'}, uri) : s.verification_uri,
	           ' yourself and enter the code there.'),
	         h('p', {class: 'muted expiry'}));
}

// --- the section --------------------------------------------------------------

function detectList(d, seen, opts = {}) {
	const presets = d.presets || [];
	const objs = d.moat_objects || [];
	const custom = Object.entries(d.custom_rules || {}).filter(([, n]) => n > 0);
	return h('dl', {class: 'kv'},
	         seen.tenant_id || seen.tenant ? [h('dt', null, 'Tenant'),
	                                          h('dd', {class: 'mono'}, seen.tenant_id || seen.tenant)] : null,
	         seen.account ? [h('dt', null, 'Signed in as'), h('dd', null, seen.account)] : null,
	         typeof seen.seen === 'number' ? [h('dt', null, 'Read'), h('dd', null, fmtTime(seen.seen))] : null,
	         h('dt', null, 'Defender for Office 365'),
	         h('dd', null, d.defender ? 'Yes: Safe Links and Safe Attachments are offered'
	                                  : 'No: Safe Links and Safe Attachments are not offered'),
	         h('dt', null, 'Accepted domains'),
	         h('dd', null, (d.accepted_domains || []).length ? d.accepted_domains.join(', ') : 'none'),
	         h('dt', null, 'Preset policies'),
	         h('dd', null, presets.length
	                 ? h('ul', {class: 'plain'}, presets.map((p) => h('li', null, p.name, ' (',
	                                                                  /ATP/.test(p.kind || '') ? 'Defender' : 'EOP',
	                                                                  '): ', p.state)))
	                 : 'none'),
	         h('dt', null, 'Custom rules on'),
	         h('dd', null, custom.length ? custom.map(([k, n]) => k + ': ' + n).join(', ') : 'none'),
	         d.dehydrated ? [h('dt', null, 'Customization'),
	                         h('dd', null, 'Not customised yet: the wizard runs Enable-OrganizationCustomization ' +
	                           'first (Microsoft can take up to an hour).')] : null,
	         opts.noObjects ? null : h('dt', null, 'Made by moat'),
	         opts.noObjects ? null : h('dd', null, objs.length
	                 ? h('ul', {class: 'plain'}, objs.map((o) => {
		                 const m = MOAT_OBJECTS.find((x) => x.name === o.name);
		                 return h('li', null, m ? m.label : o.name, ': ', o.state);
	                 }))
	                 : 'nothing yet'));
}

// The rule and the connectors as Exchange last showed them: after the
// newest job that tells (an undo that ended, a read-back of an apply or
// check job, a read of the tenant).
function objectStates(jobs) {
	const last = jobs.find((j) => (j.kind === 'undo' && j.state === 'done') ||
	                              (Array.isArray(j.check) && j.check.length &&
	                               (FINAL.has(j.state) || j.state === 'waiting')) ||
	                              (j.kind === 'connect' && j.state === 'done' && j.detect));
	if (!last)
		return h('p', {class: 'muted'}, 'moat has not read your tenant yet.');
	const objs = last.detect ? last.detect.moat_objects || [] : [];
	const rows = MOAT_OBJECTS.map((m) => {
		const c = last.check ? last.check.find((x) => x.item === m.item) : null;
		let b;
		if (last.kind === 'undo') {
			b = badge('not there', 'todo');
		} else if (c) {
			b = badge(c.status);
		} else if (last.kind !== 'apply') { // a read without changes
			const o = objs.find((x) => x.name === m.name);
			b = o ? badge(o.state, o.state === 'Enabled' ? 'ok' : 'pending') : badge('not there', 'todo');
		} else {
			b = badge('not part of it', 'todo');
		}
		return h('li', {dataset: {item: m.item}}, m.label, ': ', b);
	});
	return [h('ul', {class: 'plain objects'}, rows),
	        h('p', {class: 'muted'}, 'After the ', last.kind, ' job of ', fmtTime(last.created), '.')];
}

// The tenant was read when a job signed in: before the changes of an apply
// or undo job (the rule and connectors card shows their check).
function staleNote(seen, jobs) {
	const j = jobs.find((x) => x.detect && x.updated === seen.seen);
	if (!j || (j.kind !== 'apply' && j.kind !== 'undo'))
		return null;
	return h('p', {class: 'muted'}, 'Read when the ', j.kind, ' job of ', fmtTime(j.created), ' signed in, before its ' +
	         'changes. Read the tenant again to see it as it is now.');
}

async function overview(root) {
	page(root, 'Microsoft 365', loading());
	let tenant, jobs;
	try {
		[tenant, jobs] = await Promise.all([api('GET', 'm365/tenant'), api('GET', 'm365/jobs')]);
	} catch (e) {
		page(root, 'Microsoft 365', errorBox(e));
		return;
	}
	const items = (jobs && jobs.items) || [];
	const running = items.filter((j) => !FINAL.has(j.state));
	const lastApply = items.find((j) => j.kind === 'apply' && j.choice);
	const seen = tenant.seen;
	const start = async (body, slot) => {
		try {
			const j = await api('POST', 'm365/jobs', body);
			location.hash = '#/m365/job/' + j.id;
		} catch (e) {
			fill(slot, errorBox(e));
		}
	};

	// The bypass-clutter rule and the connectors.
	const lc = lastApply ? lastApply.choice : {};
	const rc = choiceForm({prefix: 'rc', offer: null,
	                       choice: {protections: [], bypass_rule: lc.bypass_rule !== false, mode: lc.mode || 'none',
	                                enhanced_filtering: !!lc.enhanced_filtering}});
	const rcErr = h('div', {'aria-live': 'assertive'});
	const rules = h('section', {class: 'card', 'aria-labelledby': 'm365-rc'},
	                h('h2', {id: 'm365-rc'}, 'Bypass-clutter rule and connectors'),
	                objectStates(items),
	                h('p', {class: 'muted'}, 'Set up, check or remove only the rule and the connectors. Each goes ' +
	                  'through the same sign-in with a single-use code.'),
	                rc.el, rcErr,
	                h('div', {class: 'actions'},
	                  h('button', {class: 'primary', type: 'button', id: 'm365-rc-apply',
	                               onclick: () => start(Object.assign({kind: 'apply'}, rc.value(), {protections: []}),
	                                                    rcErr)},
	                    'Apply rule and connectors'),
	                  h('button', {type: 'button', id: 'm365-run-check',
	                               onclick: () => start({kind: 'check'}, rcErr)}, 'Check configuration'),
	                  h('button', {type: 'button', class: 'danger', id: 'm365-undo',
	                               onclick: async () => {
		                               if (await confirmDialog('Undo everything moat changed in Exchange Online? ' +
		                                                       'moat removes its rules and connectors and puts ' +
		                                                       'back the protection settings it changed. You sign ' +
		                                                       'in with a code first.', 'Undo', true))
			                               start({kind: 'undo'}, rcErr);
	                               }}, 'Undo moat\'s changes')));

	// The tenant as last seen.
	const tErr = h('div', {'aria-live': 'assertive'});
	const tenantCard = h('section', {class: 'card', 'aria-labelledby': 'm365-seen'},
	                     h('h2', {id: 'm365-seen'}, 'Your tenant as moat last saw it'),
	                     seen ? [detectList(seen.detect, seen, {noObjects: true}), staleNote(seen, items)]
	                          : emptyState('moat has not signed in to your tenant yet.',
	                                       h('p', null, 'The wizard reads it first. You can also read it now: that ' +
	                                         'changes nothing.')),
	                     tErr,
	                     h('div', {class: 'actions'},
	                       h('button', {type: 'button', id: 'm365-connect',
	                                    onclick: () => start({kind: 'connect'}, tErr)},
	                         seen ? 'Read the tenant again' : 'Read the tenant')));

	// The PowerShell script.
	const ps = choiceForm({prefix: 'ps', offer: PROTECTIONS.map((p) => p.key),
	                       choice: {protections: tenant.offer.slice(), bypass_rule: true, mode: 'none',
	                                enhanced_filtering: false}});
	const psErr = h('div', {'aria-live': 'assertive'});
	const scriptCard = h('section', {class: 'card', 'aria-labelledby': 'm365-ps'},
	                     h('h2', {id: 'm365-ps'}, 'PowerShell script'),
	                     h('p', null, 'Prefer to run the changes yourself? The script makes the same changes as the ' +
	                       'wizard, each with a comment saying why. Run it after Connect-ExchangeOnline.'),
	                     h('details', null, h('summary', null, 'Choose what the script does'), ps.el),
	                     psErr,
	                     h('div', {class: 'actions'},
	                       h('button', {type: 'button', id: 'm365-ps-view',
	                                    onclick: () => showScript('PowerShell script',
	                                                              'm365/script' + choiceQuery(ps.value()))},
	                         'View script'),
	                       h('button', {type: 'button', id: 'm365-ps-download',
	                                    onclick: async () => {
		                                    clear(psErr);
		                                    try {
			                                    downloadText(await apiText('m365/script' + choiceQuery(ps.value())),
			                                                 'moat-m365.ps1');
		                                    } catch (e) {
			                                    psErr.append(errorBox(e));
		                                    }
	                                    }}, 'Download moat-m365.ps1')));

	const jobsCard = h('section', {class: 'card', 'aria-labelledby': 'm365-jobs'},
	                   h('h2', {id: 'm365-jobs'}, 'Recent jobs'),
	                   table([
		                   {key: 'created', label: 'Started', render: (j) => fmtTime(j.created)},
		                   {key: 'kind', label: 'Job', render: (j) => [j.kind, ' ', stateBadge(j.state)]},
		                   {key: 'account', label: 'Signed in as',
		                    render: (j) => [j.account || '–', j.who ? h('small', {class: 'muted by'}, 'by ', j.who) : null]},
	                   ], items.slice(0, 20), {
		                   empty: 'No job yet. Start with the wizard.',
		                   stack: true,
		                   onRow: (j) => {
			                   location.hash = '#/m365/job/' + j.id;
		                   },
	                   }).el);

	page(root, 'Microsoft 365',
	     h('section', {class: 'card lead', 'aria-labelledby': 'm365-lead'},
	       h('h2', {id: 'm365-lead'}, 'Exchange Online'),
	       h('p', null, 'moat sets up Exchange Online for you: it switches off the Microsoft Defender protections it ' +
	         'replaces, so mail released from moat\'s quarantine is not quarantined a second time, and adds the ' +
	         'bypass-clutter rule for mail from moat. You sign in once with a single-use code.'),
	       running.length ? h('p', {class: 'notice'}, 'A job is running: ',
	                          h('a', {href: '#/m365/job/' + running[0].id}, running[0].kind, ', started ',
	                            fmtTime(running[0].created)), '.')
	                      : null,
	       h('div', {class: 'actions'},
	         h('a', {class: 'button primary', href: '#/m365/wizard', id: 'm365-wizard'}, 'Set up Exchange Online'))),
	     h('div', {class: 'grid'}, tenantCard, rules),
	     scriptCard, jobsCard);
}
