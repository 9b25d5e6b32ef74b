/*
 * quarantine_preview.h - what an administrator sees of a held message
 * (GET /api/v1/quarantine/{id}/preview): its header fields decoded, its
 * text, its HTML turned into text, its links and a list of its
 * attachments, as one JSON object of text only. Nothing of the message
 * is rendered, fetched, opened or handed to anything that interprets it.
 */
#ifndef MOAT_QUARANTINE_PREVIEW_H
#define MOAT_QUARANTINE_PREVIEW_H

#include <stddef.h>

#include <jansson.h>

#define QUARANTINE_PREVIEW_TEXT_MAX    (256u * 1024) /* octets of "text" and of "html_text" */
#define QUARANTINE_PREVIEW_HEADERS_MAX 200           /* entries of "headers" */
#define QUARANTINE_PREVIEW_ATTACH_MAX  200           /* entries of "attachments" */
#define QUARANTINE_PREVIEW_LINKS_MAX   200           /* entries of "links" */

/*
 * The preview of msg (the message as received, CRLF or LF line ends):
 *
 *   subject, from, to, cc, date, message_id: the first such field,
 *       RFC 2047 decoded, unfolded ("" when absent)
 *   headers: [{name, value}] every top-level field in order, decoded
 *   text: the first text/plain body part, charset-converted
 *   html_text: the first text/html body part as plain text (links as
 *       "text <target>", images as "[image: alt]")
 *   links: [{text, href}] of that HTML
 *   attachments: [{filename, content_type, size, sha256}] every other
 *       leaf part and attached message; size and sha256 of the decoded
 *       content
 *   parts: MIME entities seen; truncated: a limit cut something
 *   error: only when the message could not be parsed at all
 *
 * Every string is valid UTF-8 without control characters (text and
 * html_text keep \n and \t). Never NULL; allocation failure does not
 * return. Text is still text from the sender: a client shows it as text
 * (never as markup). Call after scan_init() (GMime and libxml2 set up);
 * any thread.
 */
json_t *quarantine_preview(const unsigned char *msg, size_t len);

#endif
