-- Jetmon v1 ids (blog_id): unique among sites that have one, so a v1 consumer maps each of its
-- ids to exactly one site; indexed for `GET /sites?blog_id__in=`.
CREATE UNIQUE INDEX sites_blog_id ON sites (blog_id) WHERE blog_id IS NOT NULL;
