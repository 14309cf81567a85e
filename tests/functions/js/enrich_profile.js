// Enrich events with the user's profile from an internal API (cached per user for a minute).
// Settings: apiBase (URL), apiKey (secret).

const PROFILE_TTL_MS = 60 * 1000

async function lookupProfile(userId, settings) {
  return cache.load(`profile:${userId}`, PROFILE_TTL_MS, async () => {
    let res
    try {
      res = await fetch(`${settings.apiBase}/v1/users/${encodeURIComponent(userId)}`, {
        headers: { Authorization: `Bearer ${settings.apiKey}`, Accept: 'application/json' }
      })
    } catch (err) {
      throw new RetryError(`profile API unreachable: ${err.message}`)
    }
    if (res.status === 404) return null
    if (res.status === 429 || res.status >= 500) {
      throw new RetryError(`profile API answered ${res.status}`)
    }
    if (!res.ok) throw new Error(`profile API answered ${res.status}`)
    return res.json()
  })
}

async function onIdentify(event, settings) {
  if (!event.userId) throw new ValidationError('userId is required')
  const profile = await lookupProfile(event.userId, settings)
  if (profile) {
    event.traits = {
      ...event.traits,
      plan: profile.plan,
      company: profile.company && profile.company.name,
      lifetimeValue: profile.ltv
    }
  }
  return event
}

async function onTrack(event, settings) {
  if (!event.userId) return event // anonymous: nothing to look up
  const profile = await lookupProfile(event.userId, settings)
  event.properties = { ...event.properties, plan: profile ? profile.plan : 'unknown' }
  return event
}
