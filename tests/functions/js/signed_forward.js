// Ask a partner API, authenticated by a short-lived JWT, whether the user may be sent on,
// and attach the verdict. Settings: partnerUrl, signingKey (secret).

function partnerToken(event, settings) {
  return jsonwebtoken.sign(
    { sub: event.userId, scope: 'consent:read' },
    settings.signingKey,
    { algorithm: 'HS256', expiresIn: '5m', issuer: 'sluice-insert-fn', jwtid: event.messageId }
  )
}

async function onTrack(event, settings) {
  const res = await fetch(`${settings.partnerUrl}/consent`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${partnerToken(event, settings)}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ userId: event.userId, event: event.event })
  })
  if (res.status === 401) throw new Error('partner API refused our token')
  if (res.status >= 500 || res.status === 429) throw new RetryError(`partner API answered ${res.status}`)
  const verdict = await res.json()
  if (!verdict.consent) throw new DropEvent(`user ${event.userId} has not consented`)
  event.context = { ...event.context, consent: { checkedBy: verdict.checkedBy } }
  return event
}
