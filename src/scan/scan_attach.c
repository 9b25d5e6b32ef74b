/*
 * scan_attach.c - what an attachment is, whatever it claims to be: names
 * (blocked, double and reversed extensions, names that disagree), the
 * detected type against the declared one, executables, archives opened
 * from memory with libarchive (entries, nesting, expansion, encryption)
 * and office macros (OOXML vbaProject.bin, OLE2 VBA storages).
 *
 * References: RFC 2183 (Content-Disposition filename), [MS-CFB] (the OLE2
 * Compound File Binary format: header, FAT, directory entries), ECMA-376
 * part 2 (OOXML packages are zip files), the PE/COFF, ELF and Mach-O
 * headers' magic numbers.
 *
 * Design:
 * - A name is judged the way Windows would open it: the last path
 *   component, bidirectional and zero-width controls removed (they change
 *   how a name looks, not what it is), trailing dots and spaces stripped.
 * - Every candidate name of a part is checked and each finding is its own
 *   symbol, so the most dangerous reading always wins.
 * - Archives are read from the decoded part in memory. Entry data is
 *   stream-decompressed and counted; only the first block is kept, unless
 *   it shows a nested archive or an OLE2 file, which is kept whole up to
 *   ATTACH_KEEP_MAX to be opened in turn. Expansion is counted over the
 *   whole attachment, nested archives included, against
 *   scan_archive_max_size and, past ATTACH_BOMB_MIN, scan_archive_max_ratio.
 * - Only formats and filters that libarchive reads in-process are enabled
 *   (no mtree, which opens local files; no filters that run programs).
 */
#include "scan_internal.h"

#include <stdlib.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "../common/util.h"

#define ATTACH_NAME_MAX  1024        /* octets of a name judged */
#define ATTACH_EXT_MAX   32          /* octets of an extension compared */
#define ATTACH_HEAD_MAX  65536       /* octets of each entry always kept */
#define ATTACH_KEEP_MAX  (32u << 20) /* a nested archive or OLE2 file kept to open */
#define ATTACH_BLOCK     65536       /* decompression block */
#define ATTACH_BOMB_MIN  (1u << 20)  /* expansion below which the ratio is not judged */
#define OLE_DIR_SECTORS  4096        /* directory sectors followed in an OLE2 file */
#define OLE_DIFAT_HEADER 109         /* FAT sector ids in the OLE2 header */

static const unsigned char ole_magic[8] = {0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1};

/* One attachment being judged (the archive walk shares it). */
struct attach_ctx {
	struct scan_task *t;
	const char *name;  /* for details */
	size_t packed;     /* octets of the attachment as decoded from MIME */
	uint64_t expanded; /* octets decompressed so far, all levels */
	uint64_t files;    /* archive entries so far, all levels */
	bool stop;         /* a limit was hit: read no further */
};

/* --- names --- */

/* Length of a formatting control (bidi, zero width) starting at s, or 0. */
static size_t
attach_control_len(const unsigned char *s, size_t n)
{
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x80 &&
	    ((s[2] >= 0x8b && s[2] <= 0x8f) || (s[2] >= 0xaa && s[2] <= 0xae)))
		return 3; /* U+200B-200F, U+202A-202E */
	if (n >= 3 && s[0] == 0xe2 && s[1] == 0x81 &&
	    ((s[2] >= 0xa0 && s[2] <= 0xa4) || (s[2] >= 0xa6 && s[2] <= 0xa9)))
		return 3; /* U+2060-2064, U+2066-2069 */
	if (n >= 3 && s[0] == 0xef && s[1] == 0xbb && s[2] == 0xbf)
		return 3; /* U+FEFF */
	return 0;
}

/* Does name hold a bidirectional override or isolate (U+202D, U+202E, U+2066-2069)? */
static bool
attach_has_bidi(const char *name)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t n = strlen(name);

	for (size_t i = 0; i + 2 < n; i++)
		if (s[i] == 0xe2 && ((s[i + 1] == 0x80 && (s[i + 2] == 0xad || s[i + 2] == 0xae)) ||
		                     (s[i + 1] == 0x81 && s[i + 2] >= 0xa6 && s[i + 2] <= 0xa9)))
			return true;
	return false;
}

/* The name as Windows would open it into out: last component, controls out, no trailing
 * dots/spaces. */
static void
attach_name_clean(const char *name, char *out, size_t size)
{
	const char *base = name;
	size_t n, o = 0;

	for (const char *p = name; *p != '\0'; p++)
		if (*p == '/' || *p == '\\')
			base = p + 1;
	n = strnlen(base, ATTACH_NAME_MAX);
	for (size_t i = 0; i < n && o + 1 < size;) {
		size_t cl = attach_control_len((const unsigned char *)base + i, n - i);

		if (cl > 0) {
			i += cl;
			continue;
		}
		out[o++] = base[i++];
	}
	while (o > 0 && (out[o - 1] == '.' || out[o - 1] == ' '))
		o--;
	out[o] = '\0';
}

/* The extension of a clean name, lower case, into ext; false when none. */
static bool
attach_ext(const char *clean, char *ext, size_t size)
{
	const char *dot = strrchr(clean, '.');
	size_t n;

	if (dot == NULL || dot == clean)
		return false;
	n = strlen(dot + 1);
	if (n == 0 || n >= size)
		return false;
	memcpy(ext, dot + 1, n + 1);
	str_lower(ext);
	return true;
}

/* Is ext (lower case) in the comma-separated list (case-insensitive, '.' optional)? */
static bool
attach_ext_listed(const char *list, const char *ext)
{
	size_t elen = strlen(ext);

	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);

		while (p < end && (*p == ' ' || *p == '\t' || *p == '.'))
			p++;
		while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if ((size_t)(end - p) == elen && mem_ieq(p, ext, elen))
			return true;
		p = comma ? comma + 1 : NULL;
	}
	return false;
}

static bool
attach_blocked(const struct scan_task *t, const char *ext)
{
	return t->cfg->scan_blocked_extensions != NULL &&
	       attach_ext_listed(t->cfg->scan_blocked_extensions, ext);
}

/* Does the stem (name without its last extension) end in an extension of its own? */
static bool
attach_stem_has_ext(const char *clean)
{
	const char *dot = strrchr(clean, '.');
	char stem[ATTACH_NAME_MAX + 1], ext[ATTACH_EXT_MAX];
	size_t n;

	if (dot == NULL)
		return false;
	n = (size_t)(dot - clean);
	if (n >= sizeof(stem))
		return false;
	memcpy(stem, clean, n);
	/* "name.docx .exe", "name.pdf      .exe": Windows shows the spaces, not the end */
	while (n > 0 && (stem[n - 1] == ' ' || stem[n - 1] == '.' || stem[n - 1] == '_'))
		n--;
	stem[n] = '\0';
	if (!attach_ext(stem, ext, sizeof(ext)) || strlen(ext) > 5)
		return false;
	for (const char *p = ext; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

static const char *const attach_macro_exts =
        "docm,dotm,xlsm,xltm,xlam,xlsb,pptm,potm,ppsm,ppam,sldm";

/* Findings of one name; inner: a name inside an archive (detail "archive:name"). */
static void
attach_check_name(struct attach_ctx *c, const char *name, const char *inner)
{
	char clean[ATTACH_NAME_MAX + 1], ext[ATTACH_EXT_MAX];
	const char *shown = inner ? inner : name;

	if (attach_has_bidi(shown))
		scan_sym(c->t, SYM_ATTACH_RTLO, "%s%s%.100s", inner ? c->name : "",
		         inner ? ":" : "", shown);
	attach_name_clean(shown, clean, sizeof(clean));
	if (!attach_ext(clean, ext, sizeof(ext)))
		return;
	if (attach_blocked(c->t, ext)) {
		if (inner != NULL)
			scan_sym(c->t, SYM_ARCHIVE_BLOCKED_EXT, "%.60s:%.100s", c->name, inner);
		else
			scan_sym(c->t, SYM_ATTACH_BLOCKED_EXT, "%.100s", name);
		if (attach_stem_has_ext(clean))
			scan_sym(c->t, SYM_ATTACH_DOUBLE_EXT, "%s%s%.100s", inner ? c->name : "",
			         inner ? ":" : "", shown);
	}
	if (attach_ext_listed(attach_macro_exts, ext))
		scan_sym(c->t, SYM_OFFICE_MACRO, "%s%s%.100s", inner ? c->name : "",
		         inner ? ":" : "", shown);
}

/* --- content types --- */

enum attach_class {
	AC_NONE, /* unknown or anything goes */
	AC_PDF,
	AC_IMAGE,
	AC_TEXT,
	AC_RTF,
	AC_OLE,
	AC_OOXML,
	AC_ZIP,
	AC_ARCHIVE,
	AC_EXE,
};

static const struct {
	const char *ext;
	enum attach_class cls;
} attach_ext_classes[] = {
        {"pdf", AC_PDF},     {"jpg", AC_IMAGE},  {"jpeg", AC_IMAGE},  {"png", AC_IMAGE},
        {"gif", AC_IMAGE},   {"bmp", AC_IMAGE},  {"tif", AC_IMAGE},   {"tiff", AC_IMAGE},
        {"webp", AC_IMAGE},  {"txt", AC_TEXT},   {"csv", AC_TEXT},    {"log", AC_TEXT},
        {"htm", AC_TEXT},    {"html", AC_TEXT},  {"xml", AC_TEXT},    {"rtf", AC_RTF},
        {"doc", AC_OLE},     {"xls", AC_OLE},    {"ppt", AC_OLE},     {"msg", AC_OLE},
        {"docx", AC_OOXML},  {"xlsx", AC_OOXML}, {"pptx", AC_OOXML},  {"docm", AC_OOXML},
        {"xlsm", AC_OOXML},  {"pptm", AC_OOXML}, {"zip", AC_ZIP},     {"7z", AC_ARCHIVE},
        {"rar", AC_ARCHIVE}, {"gz", AC_ARCHIVE}, {"tgz", AC_ARCHIVE}, {"tar", AC_ARCHIVE},
        {"bz2", AC_ARCHIVE}, {"xz", AC_ARCHIVE}, {"cab", AC_ARCHIVE}, {"iso", AC_ARCHIVE},
        {"exe", AC_EXE},     {"dll", AC_EXE},    {"scr", AC_EXE},     {"com", AC_EXE},
        {"sys", AC_EXE},     {"cpl", AC_EXE},
};

static enum attach_class
attach_class_of_ext(const char *ext)
{
	for (size_t i = 0; i < nitems(attach_ext_classes); i++)
		if (strcmp(attach_ext_classes[i].ext, ext) == 0)
			return attach_ext_classes[i].cls;
	return AC_NONE;
}

static bool
attach_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Class of a MIME type (lower case), declared or detected. */
static enum attach_class
attach_class_of_type(const char *type)
{
	static const char *const exe[] = {
	        "application/x-dosexec",
	        "application/x-msdownload",
	        "application/x-executable",
	        "application/x-sharedlib",
	        "application/x-pie-executable",
	        "application/x-mach-binary",
	        "application/vnd.microsoft.portable-executable",
	};
	static const char *const ole[] = {
	        "application/msword",
	        "application/vnd.ms-excel",
	        "application/vnd.ms-powerpoint",
	        "application/x-ole-storage",
	        "application/cdfv2",
	        "application/vnd.ms-outlook",
	        "application/vnd.ms-office",
	};
	static const char *const archive[] = {
	        "application/x-7z-compressed",
	        "application/x-rar",
	        "application/vnd.rar",
	        "application/x-rar-compressed",
	        "application/x-tar",
	        "application/gzip",
	        "application/x-gzip",
	        "application/x-bzip2",
	        "application/x-xz",
	        "application/vnd.ms-cab-compressed",
	        "application/x-iso9660-image",
	        "application/zstd",
	};

	if (type == NULL || *type == '\0')
		return AC_NONE;
	for (size_t i = 0; i < nitems(exe); i++)
		if (strcmp(type, exe[i]) == 0)
			return AC_EXE;
	if (strstr(type, "openxmlformats") != NULL || strstr(type, "macroenabled") != NULL)
		return AC_OOXML;
	for (size_t i = 0; i < nitems(ole); i++)
		if (strcmp(type, ole[i]) == 0)
			return AC_OLE;
	for (size_t i = 0; i < nitems(archive); i++)
		if (strcmp(type, archive[i]) == 0)
			return AC_ARCHIVE;
	if (strcmp(type, "application/pdf") == 0)
		return AC_PDF;
	if (strcmp(type, "application/zip") == 0 ||
	    strcmp(type, "application/x-zip-compressed") == 0)
		return AC_ZIP;
	if (strcmp(type, "text/rtf") == 0 || strcmp(type, "application/rtf") == 0)
		return AC_RTF;
	if (attach_prefix(type, "image/") && strcmp(type, "image/svg+xml") != 0)
		return AC_IMAGE;
	if (attach_prefix(type, "text/"))
		return AC_TEXT;
	return AC_NONE;
}

/* Would a reader that expects want open got as such (or harmlessly)? */
static bool
attach_class_fits(enum attach_class want, enum attach_class got)
{
	if (want == AC_NONE || got == AC_NONE || want == got)
		return true;
	if (want == AC_EXE)
		return true; /* blocked by name anyway */
	switch (want) {
	case AC_OLE:
		/*
		 * Word opens a .docx named .doc, Excel a CSV (Windows declares CSV
		 * as application/vnd.ms-excel), Word RTF (sent as msword)
		 */
		return got == AC_OOXML || got == AC_ZIP || got == AC_TEXT || got == AC_RTF;
	case AC_ZIP:
	case AC_OOXML:
		return got == AC_OOXML || got == AC_ZIP;
	case AC_ARCHIVE:
		return got == AC_ZIP;
	case AC_TEXT:
		return got == AC_RTF;
	default:
		return false;
	}
}

static uint32_t
attach_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint16_t
attach_le16(const unsigned char *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* PE (and DOS MZ), ELF, Mach-O (thin and fat) by their magic numbers. */
static bool
attach_is_executable(const unsigned char *d, size_t len, const char *magic)
{
	if (attach_class_of_type(magic) == AC_EXE)
		return true;
	if (len >= 64 && d[0] == 'M' && d[1] == 'Z') {
		uint32_t pe = attach_le32(d + 0x3c);

		if (pe <= len - 4 && memcmp(d + pe, "PE\0\0", 4) == 0)
			return true;
	}
	if (len >= 4 && memcmp(d,
	                       "\x7f"
	                       "ELF",
	                       4) == 0)
		return true;
	if (len >= 8) {
		static const unsigned char macho[][4] = {
		        {0xfe, 0xed, 0xfa, 0xce},
		        {0xfe, 0xed, 0xfa, 0xcf},
		        {0xce, 0xfa, 0xed, 0xfe},
		        {0xcf, 0xfa, 0xed, 0xfe},
		};
		uint32_t nfat =
		        (uint32_t)d[4] << 24 | (uint32_t)d[5] << 16 | (uint32_t)d[6] << 8 | d[7];

		for (size_t i = 0; i < nitems(macho); i++)
			if (memcmp(d, macho[i], 4) == 0)
				return true;
		/* fat Mach-O; a Java class has the same magic and a version >= 45 here */
		if (memcmp(d, "\xca\xfe\xba\xbe", 4) == 0 && nfat >= 1 && nfat < 30)
			return true;
	}
	return false;
}

enum attach_archive_kind {
	AK_NONE,
	AK_ARCHIVE,    /* an archive format */
	AK_COMPRESSED, /* a compressed stream, possibly of one plain file */
};

/* Does data start like an archive libarchive should open? */
static enum attach_archive_kind
attach_archive_kind(const unsigned char *d, size_t len, const char *magic)
{
	static const struct {
		size_t off, len;
		const char *sig;
		enum attach_archive_kind kind;
	} sigs[] = {
	        {0, 4, "PK\x03\x04", AK_ARCHIVE},
	        {0, 4, "PK\x05\x06", AK_ARCHIVE},
	        {0, 4, "PK\x07\x08", AK_ARCHIVE},
	        {0, 6, "7z\xbc\xaf\x27\x1c", AK_ARCHIVE},
	        {0, 6, "Rar!\x1a\x07", AK_ARCHIVE},
	        {0, 4, "MSCF", AK_ARCHIVE},
	        {0, 4, "xar!", AK_ARCHIVE},
	        {257, 5, "ustar", AK_ARCHIVE},
	        {0x8001, 5, "CD001", AK_ARCHIVE},
	        {0x8801, 5, "CD001", AK_ARCHIVE},
	        {0x9001, 5, "CD001", AK_ARCHIVE},
	        {0, 2, "\x1f\x8b", AK_COMPRESSED},
	        {0, 3, "BZh", AK_COMPRESSED},
	        {0, 6,
	         "\xfd"
	         "7zXZ\0",
	         AK_COMPRESSED},
	        {0, 4, "\x28\xb5\x2f\xfd", AK_COMPRESSED},
	};
	enum attach_class cls = attach_class_of_type(magic);

	for (size_t i = 0; i < nitems(sigs); i++)
		if (len >= sigs[i].off + sigs[i].len &&
		    memcmp(d + sigs[i].off, sigs[i].sig, sigs[i].len) == 0)
			return sigs[i].kind;
	if (cls == AC_ZIP || cls == AC_OOXML || cls == AC_ARCHIVE)
		return AK_ARCHIVE;
	return AK_NONE;
}

/* --- OLE2 ([MS-CFB]) --- */

/* Is a directory entry name (ASCII of the UTF-16LE) a VBA storage or stream? */
static bool
attach_ole_vba_name(const char *name)
{
	return str_ieq(name, "VBA") || str_ieq(name, "Macros") || str_ieq(name, "_VBA_PROJECT") ||
	       str_ieq(name, "_VBA_PROJECT_CUR");
}

/* Macros in an OLE2 file: its directory entries' names, following the FAT chain. */
static bool
attach_ole_macros(const unsigned char *d, size_t len)
{
	static const unsigned char vba16[] = "_\0V\0B\0A\0_\0P\0R\0O\0J\0E\0C\0T\0";
	uint32_t shift, ss, sid, per;
	bool walked = false;

	if (len < 512 || memcmp(d, ole_magic, sizeof(ole_magic)) != 0)
		return false;
	shift = attach_le16(d + 0x1e);
	if (shift != 9 && shift != 12)
		goto fallback;
	ss = 1u << shift;
	per = ss / 4;
	sid = attach_le32(d + 0x30);
	for (size_t n = 0; n < OLE_DIR_SECTORS && sid < 0xfffffffa; n++) {
		uint64_t off = ((uint64_t)sid + 1) * ss, foff;
		uint32_t fidx = sid / per, fsec;

		if (off + ss > len)
			break;
		walked = true;
		for (uint32_t e = 0; e < ss / 128; e++) {
			const unsigned char *ent = d + off + (uint64_t)e * 128;
			uint16_t nlen = attach_le16(ent + 0x40);
			char name[32];
			size_t k;

			if (nlen < 2 || nlen > 64 || (ent[0x42] != 1 && ent[0x42] != 2))
				continue;
			for (k = 0; k < (size_t)nlen / 2 - 1 && k + 1 < sizeof(name); k++)
				name[k] = ent[2 * k + 1] == 0 && ent[2 * k] < 0x80
				                  ? (char)ent[2 * k]
				                  : '?';
			name[k] = '\0';
			if (attach_ole_vba_name(name))
				return true;
		}
		if (fidx >= OLE_DIFAT_HEADER)
			break;
		fsec = attach_le32(d + 0x4c + (size_t)fidx * 4);
		if (fsec >= 0xfffffffa)
			break;
		foff = ((uint64_t)fsec + 1) * ss + (uint64_t)(sid % per) * 4;
		if (foff + 4 > len)
			break;
		sid = attach_le32(d + foff);
	}
	if (walked)
		return false;
fallback:
	/* a directory we could not follow: the stream name anywhere */
	return memmem(d, len, vba16, sizeof(vba16) - 1) != NULL;
}

/* --- archives --- */

static bool attach_archive(struct attach_ctx *c, const unsigned char *d, size_t len, unsigned depth,
                           enum attach_archive_kind kind);

static bool
attach_encryption_error(struct archive *a)
{
	const char *e = archive_error_string(a);

	return e != NULL && (strstr(e, "ncrypt") != NULL || strstr(e, "assphrase") != NULL);
}

/* Count n more expanded octets; false (and ARCHIVE_BOMB) past a limit. */
static bool
attach_expand(struct attach_ctx *c, size_t n)
{
	const struct config *cfg = c->t->cfg;

	c->expanded += n;
	if (c->expanded > cfg->scan_archive_max_size) {
		scan_sym(c->t, SYM_ARCHIVE_BOMB, "%.100s: over %llu octets", c->name,
		         (unsigned long long)cfg->scan_archive_max_size);
		return false;
	}
	if (c->expanded > ATTACH_BOMB_MIN &&
	    c->expanded / (c->packed ? c->packed : 1) > cfg->scan_archive_max_ratio) {
		scan_sym(c->t, SYM_ARCHIVE_BOMB, "%.100s: ratio over %u", c->name,
		         (unsigned)cfg->scan_archive_max_ratio);
		return false;
	}
	return true;
}

/* Read the current entry's data; judge its head, open it when it is an archive. */
static void
attach_entry(struct attach_ctx *c, struct archive *a, const char *ename, unsigned depth)
{
	unsigned char *keep = NULL, *block = xmalloc(ATTACH_BLOCK);
	size_t kept = 0, cap = 0;
	bool whole = true; /* keep holds the whole entry */
	bool judged = false, want_all = false;

	for (;;) {
		la_ssize_t r = archive_read_data(a, block, ATTACH_BLOCK);

		if (r == 0)
			break;
		if (r < 0) {
			if (attach_encryption_error(a))
				scan_sym(c->t, SYM_ARCHIVE_ENCRYPTED, "%.60s:%.100s", c->name,
				         ename);
			else
				scan_sym(c->t, SYM_ARCHIVE_UNREADABLE, "%.60s:%.100s", c->name,
				         ename);
			c->stop = r == ARCHIVE_FATAL;
			whole = false;
			break;
		}
		if (!attach_expand(c, (size_t)r) || scan_remaining_ms(c->t) == 0) {
			c->stop = true;
			whole = false;
			break;
		}
		/* the head always; everything when it is something to open */
		if (!judged || want_all) {
			size_t room = (want_all ? ATTACH_KEEP_MAX : ATTACH_HEAD_MAX) - kept;
			size_t take = (size_t)r < room ? (size_t)r : room;

			if (kept + take > cap) {
				cap = kept + take > cap * 2 ? kept + take : cap * 2;
				keep = xrealloc(keep, cap);
			}
			memcpy(keep + kept, block, take);
			kept += take;
			if (take < (size_t)r)
				whole = false;
		} else
			whole = false;
		if (!judged && (kept >= ATTACH_HEAD_MAX || kept >= 0x9006)) {
			judged = true;
			want_all = attach_archive_kind(keep, kept, NULL) != AK_NONE ||
			           (kept >= sizeof(ole_magic) &&
			            memcmp(keep, ole_magic, sizeof(ole_magic)) == 0);
		}
	}
	free(block);
	if (kept > 0 && !c->stop) {
		enum attach_archive_kind kind = attach_archive_kind(keep, kept, NULL);
		char clean[ATTACH_NAME_MAX + 1], ext[ATTACH_EXT_MAX];

		/* an entry named an archive is opened as one (see attach_says_archive) */
		attach_name_clean(ename, clean, sizeof(clean));
		if (kind == AK_NONE && attach_ext(clean, ext, sizeof(ext)) &&
		    (attach_class_of_ext(ext) == AC_ZIP || attach_class_of_ext(ext) == AC_ARCHIVE))
			kind = AK_ARCHIVE;
		if (attach_is_executable(keep, kept, NULL))
			scan_sym(c->t, SYM_ATTACH_EXECUTABLE, "%.60s:%.100s", c->name, ename);
		if (whole && attach_ole_macros(keep, kept))
			scan_sym(c->t, SYM_OFFICE_MACRO, "%.60s:%.100s", c->name, ename);
		if (kind != AK_NONE) {
			if (depth + 1 > c->t->cfg->scan_archive_max_depth)
				scan_sym(c->t, SYM_ARCHIVE_NESTING, "%.60s:%.100s", c->name, ename);
			else if (!whole)
				scan_sym(c->t, SYM_ARCHIVE_UNREADABLE,
				         "%.60s:%.100s too large to open", c->name, ename);
			else
				attach_archive(c, keep, kept, depth + 1, kind);
		}
	}
	free(keep);
}

static bool
attach_vba_entry(const char *ename)
{
	const char *base = strrchr(ename, '/');

	return str_ieq(base ? base + 1 : ename, "vbaProject.bin");
}

/*
 * Open d as an archive at depth (1: the attachment itself) and judge its
 * entries. Returns false when libarchive could not read it at all.
 */
static bool
attach_archive(struct attach_ctx *c, const unsigned char *d, size_t len, unsigned depth,
               enum attach_archive_kind kind)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	bool opened = true;

	/* in-process formats and filters only: no mtree (reads local files), no programs */
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_bzip2(a);
	archive_read_support_filter_xz(a);
	archive_read_support_filter_lzma(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_format_zip(a);
	archive_read_support_format_7zip(a);
	archive_read_support_format_rar(a);
	archive_read_support_format_rar5(a);
	archive_read_support_format_tar(a);
	archive_read_support_format_cpio(a);
	archive_read_support_format_iso9660(a);
	archive_read_support_format_cab(a);
	archive_read_support_format_xar(a);
	if (kind == AK_COMPRESSED)
		archive_read_support_format_raw(a);

	if (archive_read_open_memory(a, d, len) != ARCHIVE_OK) {
		if (attach_encryption_error(a))
			scan_sym(c->t, SYM_ARCHIVE_ENCRYPTED, "%.100s", c->name);
		else
			scan_sym(c->t, SYM_ARCHIVE_UNREADABLE, "%.100s", c->name);
		archive_read_free(a);
		return false;
	}
	while (!c->stop) {
		int r = archive_read_next_header(a, &e);
		const char *ename;

		if (r == ARCHIVE_EOF)
			break;
		if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
			if (attach_encryption_error(a))
				scan_sym(c->t, SYM_ARCHIVE_ENCRYPTED, "%.100s", c->name);
			else
				scan_sym(c->t, SYM_ARCHIVE_UNREADABLE, "%.100s", c->name);
			opened = c->files > 0;
			break;
		}
		if (++c->files > c->t->cfg->scan_archive_max_files) {
			scan_sym(c->t, SYM_ARCHIVE_TOO_MANY_FILES, "%.100s", c->name);
			c->stop = true;
			break;
		}
		if (scan_remaining_ms(c->t) == 0) {
			c->stop = true;
			break;
		}
		ename = archive_entry_pathname_utf8(e);
		if (ename == NULL)
			ename = archive_entry_pathname(e);
		if (ename == NULL)
			ename = "";
		attach_check_name(c, NULL, ename);
		if (attach_vba_entry(ename))
			scan_sym(c->t, SYM_OFFICE_MACRO, "%.60s:%.100s", c->name, ename);
		if (archive_entry_is_encrypted(e)) {
			scan_sym(c->t, SYM_ARCHIVE_ENCRYPTED, "%.60s:%.100s", c->name, ename);
			archive_read_data_skip(a);
			continue;
		}
		if (archive_entry_filetype(e) != AE_IFREG && archive_entry_filetype(e) != 0)
			continue;
		attach_entry(c, a, ename, depth);
	}
	archive_read_free(a);
	return opened;
}

/* --- the check --- */

/* Declared type and extension against the detected type. */
static void
attach_check_type(struct attach_ctx *c, const struct scan_part *p)
{
	enum attach_class got = attach_class_of_type(p->magic_type);
	char clean[ATTACH_NAME_MAX + 1], ext[ATTACH_EXT_MAX];

	if (attach_is_executable(p->data, p->len, p->magic_type))
		got = AC_EXE;
	if (got == AC_NONE)
		return;
	if (!attach_class_fits(attach_class_of_type(p->ctype), got)) {
		scan_sym(c->t, SYM_ATTACH_TYPE_MISMATCH, "%.100s: %.40s is %.60s", c->name,
		         p->ctype, p->magic_type[0] ? p->magic_type : "an executable");
		return;
	}
	for (size_t i = 0; i < p->nnames; i++) {
		attach_name_clean(p->names[i], clean, sizeof(clean));
		if (attach_ext(clean, ext, sizeof(ext)) &&
		    !attach_class_fits(attach_class_of_ext(ext), got)) {
			scan_sym(c->t, SYM_ATTACH_TYPE_MISMATCH, "%.100s is %.60s", p->names[i],
			         p->magic_type[0] ? p->magic_type : "an executable");
			return;
		}
	}
}

/* Does the declared type or a name of p say zip or another archive? */
static bool
attach_says_archive(const struct scan_part *p)
{
	enum attach_class cls = attach_class_of_type(p->ctype);
	char clean[ATTACH_NAME_MAX + 1], ext[ATTACH_EXT_MAX];

	if (cls == AC_ZIP || cls == AC_ARCHIVE)
		return true;
	for (size_t i = 0; i < p->nnames; i++) {
		attach_name_clean(p->names[i], clean, sizeof(clean));
		if (attach_ext(clean, ext, sizeof(ext))) {
			cls = attach_class_of_ext(ext);
			if (cls == AC_ZIP || cls == AC_ARCHIVE)
				return true;
		}
	}
	return false;
}

/* One leaf part: its names, its content. */
static void
attach_part(struct scan_task *t, const struct scan_part *p, size_t idx)
{
	char unnamed[32];
	struct attach_ctx c = {.t = t, .packed = p->len};
	enum attach_archive_kind kind;

	snprintf(unnamed, sizeof(unnamed), "part %zu", idx);
	c.name = p->nnames > 0 ? p->names[0] : unnamed;

	for (size_t i = 0; i < p->nnames; i++)
		attach_check_name(&c, p->names[i], NULL);
	if (p->nnames > 1)
		scan_sym(t, SYM_ATTACH_NAME_AMBIGUOUS, "%.100s|%.100s", p->names[0], p->names[1]);
	if (p->data == NULL || p->len == 0)
		return;

	if (attach_is_executable(p->data, p->len, p->magic_type))
		scan_sym(t, SYM_ATTACH_EXECUTABLE, "%.100s", c.name);
	if (p->attachment)
		attach_check_type(&c, p);
	if (attach_ole_macros(p->data, p->len))
		scan_sym(t, SYM_OFFICE_MACRO, "%.100s", c.name);
	kind = attach_archive_kind(p->data, p->len, p->magic_type);
	/*
	 * Named or declared an archive although its first octets are not one
	 * (a zip behind a prefix still opens: libarchive finds its central
	 * directory): open it anyway; what does not open is quarantined.
	 */
	if (kind == AK_NONE && attach_says_archive(p))
		kind = AK_ARCHIVE;
	if (kind != AK_NONE)
		attach_archive(&c, p->data, p->len, 1, kind);
}

void
scan_check_attachments(struct scan_task *t)
{
	for (size_t i = 0; i < t->msg.nparts; i++) {
		const struct scan_part *p = &t->msg.parts[i];

		if (p->is_message || attach_prefix(p->ctype, "multipart/"))
			continue;
		if (scan_remaining_ms(t) == 0)
			return;
		attach_part(t, p, i);
	}
}
